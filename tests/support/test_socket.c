/* test_socket.c - see test_socket.h.
 *
 * One implementation of the blocking test client, so that the unit tests that drive servers
 * over real sockets (test_http.c, test_gateway_ws.c) share its timeouts and buffering instead
 * of each carrying a copy. */
#include "test_socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int test_tcp_connect(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

uint64_t test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

test_client_t *test_client_open(int port, int rcvbuf)
{
    test_client_t *cl = calloc(1, sizeof *cl);
    if (!cl)
        abort();
    cl->fd = test_tcp_connect(port, rcvbuf);
    return cl;
}

void test_client_close(test_client_t *cl)
{
    if (cl->fd >= 0)
        close(cl->fd);
    free(cl);
}

void test_client_reset(test_client_t *cl)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(cl->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    test_client_close(cl);
}

bool test_client_send(test_client_t *cl, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(cl->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool test_client_send_str(test_client_t *cl, const char *s)
{
    return test_client_send(cl, s, strlen(s));
}

ssize_t test_client_fill(test_client_t *cl)
{
    if (cl->len == sizeof cl->buf)
        return -1;
    ssize_t n;
    do
        n = recv(cl->fd, cl->buf + cl->len, sizeof cl->buf - cl->len, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        cl->len += (size_t)n;
    return n;
}

void test_client_discard(test_client_t *cl, size_t n)
{
    memmove(cl->buf, cl->buf + n, cl->len - n);
    cl->len -= n;
}

void test_client_take(test_client_t *cl, char *out, size_t n)
{
    memcpy(out, cl->buf, n);
    out[n] = '\0';
    test_client_discard(cl, n);
}

ssize_t test_client_read_exact(test_client_t *cl, char *out, size_t n)
{
    while (cl->len < n)
        if (test_client_fill(cl) <= 0)
            return -1;
    test_client_take(cl, out, n);
    return (ssize_t)n;
}

/* Reads until EOF, reset, error or timeout; drop_data empties the buffer before every read. */
static bool wait_eof(test_client_t *cl, bool drop_data)
{
    for (;;) {
        if (drop_data)
            cl->len = 0;
        ssize_t n = test_client_fill(cl);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
        if (n < 0)
            return false;
    }
}

bool test_client_wait_eof(test_client_t *cl)
{
    return wait_eof(cl, false);
}

bool test_client_wait_eof_dropping_data(test_client_t *cl)
{
    return wait_eof(cl, true);
}
