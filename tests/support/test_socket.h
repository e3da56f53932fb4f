/* test_socket.h - the blocking client sockets unit tests drive servers with.
 *
 * Tests that run a server on a libuv loop drive it from a client thread doing plain blocking
 * socket I/O (5 s timeouts, so a hung server fails a test instead of blocking it). The buffered
 * client below is the part every such test needs; each test keeps only its own protocol on top
 * (HTTP responses, WebSocket frames), reading it out of cl->buf. */
#ifndef INTEGRAL_TEST_SOCKET_H
#define INTEGRAL_TEST_SOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Room for what a client has received and not consumed yet. */
#define TEST_CLIENT_BUF (256 * 1024)

/* A connection and what it received: buf[0..len) are bytes read and not consumed yet. */
typedef struct {
    int fd; /* -1 when the connect failed: every call on the client then fails */
    size_t len;
    char buf[TEST_CLIENT_BUF];
} test_client_t;

/* A TCP connection to 127.0.0.1:port with 5 s send and receive timeouts and TCP_NODELAY, or
 * -1. rcvbuf > 0 shrinks the receive buffer first (before connect, so the advertised window is
 * small too): the kernel then cannot absorb a server's backlog. */
int test_tcp_connect(int port, int rcvbuf);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t test_now_ms(void);

/* A client connected with test_tcp_connect(port, rcvbuf); never NULL (aborts when out of
 * memory), but its fd is -1 when the connect failed. */
test_client_t *test_client_open(int port, int rcvbuf);

/* Closes gracefully (FIN) and frees the client. */
void test_client_close(test_client_t *cl);

/* Closes with an RST instead of a FIN, and frees the client. */
void test_client_reset(test_client_t *cl);

/* Sends all of data; false on error or timeout. */
bool test_client_send(test_client_t *cl, const void *data, size_t len);
bool test_client_send_str(test_client_t *cl, const char *s);

/* Reads more into cl->buf; returns the bytes read, 0 on EOF, -1 on error, timeout or a full
 * buffer. */
ssize_t test_client_fill(test_client_t *cl);

/* Drops the first n buffered bytes. */
void test_client_discard(test_client_t *cl, size_t n);

/* Moves the first n buffered bytes into out (n + 1 bytes: NUL-terminated). */
void test_client_take(test_client_t *cl, char *out, size_t n);

/* Reads exactly n bytes into out (NUL-terminated, so n + 1 bytes). Returns n, or -1 when the
 * connection ended or timed out first. */
ssize_t test_client_read_exact(test_client_t *cl, char *out, size_t n);

/* True when the server closed the connection (EOF or reset) before the timeout. Bytes that
 * arrive meanwhile are kept in cl->buf, for the test to look at. */
bool test_client_wait_eof(test_client_t *cl);

/* The same, but what is buffered or arrives meanwhile is thrown away: the buffer cannot fill
 * up however much the server still sends. */
bool test_client_wait_eof_dropping_data(test_client_t *cl);

#endif
