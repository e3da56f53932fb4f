/* test_socket.h - the blocking client sockets unit tests drive servers with. */
#ifndef INTEGRAL_TEST_SOCKET_H
#define INTEGRAL_TEST_SOCKET_H

/* A TCP connection to 127.0.0.1:port with 5 s send and receive timeouts and TCP_NODELAY, or
 * -1. rcvbuf > 0 shrinks the receive buffer first (before connect, so the advertised window is
 * small too): the kernel then cannot absorb a server's backlog. */
int test_tcp_connect(int port, int rcvbuf);

#endif
