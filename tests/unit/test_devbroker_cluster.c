/* test_devbroker_cluster.c - the dev broker's connections run without Nagle's algorithm
 * (services/devbroker/cluster.c, cluster_disable_nagle): on a plain listener, and on the
 * connections a real librdkafka mock cluster accepts. */
#include "cluster.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int nodelay_of(int fd)
{
    int v = -1;
    socklen_t len = sizeof v;
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
    return v;
}

static int listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Linux passes TCP_NODELAY from a listener to what it accepts; without it, Nagle is on. */
static void accepted_connections_inherit_nodelay(void **state)
{
    int port, lfd = listener(&port);
    int c1 = connect_to(port), a1 = accept(lfd, NULL, NULL);
    assert_int_equal(nodelay_of(a1), 0);
    assert_true(cluster_disable_nagle() >= 1);
    int c2 = connect_to(port), a2 = accept(lfd, NULL, NULL);
    assert_int_not_equal(nodelay_of(a2), 0);
    close(a1), close(c1), close(a2), close(c2), close(lfd);
}

/* The socket of this process that the mock accepted for a client on port, or -1. */
static int accepted_on(int port)
{
    DIR *dir = opendir("/proc/self/fd");
    int found = -1;
    assert_non_null(dir);
    for (struct dirent *d; found < 0 && (d = readdir(dir));) {
        int fd = atoi(d->d_name), accepting = 1;
        struct sockaddr_in a;
        socklen_t len = sizeof accepting, alen = sizeof a;
        if (fd <= 2 || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0 ||
            accepting || getsockname(fd, (struct sockaddr *)&a, &alen) < 0 ||
            a.sin_family != AF_INET || ntohs(a.sin_port) != port)
            continue;
        found = fd;
    }
    closedir(dir);
    return found;
}

static void mock_cluster_connections_run_without_nagle(void **state)
{
    cluster_t cluster = {0};
    cluster_topic_t topic = {"t", 1};
    char err[256];
    assert_int_equal(cluster_start(&cluster, 1, &topic, 1, false, err, sizeof err), 0);
    const char *colon = strrchr(cluster.bootstraps, ':');
    assert_non_null(colon);
    int port = atoi(colon + 1);
    int client = connect_to(port), served = -1;
    for (int i = 0; i < 200 && served < 0; i++) { /* the mock's thread accepts it */
        served = accepted_on(port);
        if (served < 0)
            nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    assert_true(served >= 0);
    assert_int_not_equal(nodelay_of(served), 0);
    close(client);
    cluster_stop(&cluster);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepted_connections_inherit_nodelay),
        cmocka_unit_test(mock_cluster_connections_run_without_nagle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
