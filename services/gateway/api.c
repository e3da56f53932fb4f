/* api.c - the gateway's plain HTTP: GET /api/customers/{id} and the static web UI.
 * See api.h. */
#include "api.h"

#include "gwstore.h"
#include "log.h"
#include "sessions.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CUSTOMERS_PREFIX "/api/customers/"
#define ID_MAX 128
#define STATIC_MAX (4 * 1024 * 1024)
#define API_TIMELINE_MAX 100 /* all the engine keeps */

/* ------------------------------------------------------------------------------------------
 * /api/customers/{id}
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    http_request_t *req;
    auth_claims_t claims;
} lookup_t;

static void respond_json_error(http_request_t *req, int status, const char *code)
{
    char body[160];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", code);
    const http_header_t h[] = {{"Cache-Control", "no-store"}};
    http_respond_headers(req, status, "application/json", h, 1, body, (size_t)n);
}

/* An agent may read only the customer it serves now: the document's current contact names
 * it. Supervisors read any. The engine's internals ("w") are not part of the answer; the
 * whole timeline is (gwstore_customer). */
static void on_document(void *data, bool ok, cJSON *doc)
{
    lookup_t *l = data;
    if (!ok) {
        respond_json_error(l->req, 503, "unavailable");
    } else if (!cJSON_IsObject(doc)) {
        respond_json_error(l->req, 404, "not_found");
    } else {
        const cJSON *contact = cJSON_GetObjectItemCaseSensitive(doc, "contact");
        const cJSON *agent = cJSON_GetObjectItemCaseSensitive(contact, "agent_id");
        bool serves = cJSON_IsString(agent) && strcmp(agent->valuestring, l->claims.sub) == 0;
        if (l->claims.role == AUTH_ROLE_AGENT && !serves) {
            respond_json_error(l->req, 403, "not_your_customer");
        } else {
            char *text = cJSON_PrintUnformatted(doc);
            const http_header_t h[] = {{"Cache-Control", "no-store"}};
            if (text)
                http_respond_headers(l->req, 200, "application/json", h, 1, text, strlen(text));
            else
                respond_json_error(l->req, 500, "internal");
            free(text);
        }
    }
    cJSON_Delete(doc);
    free(l);
}

static void on_customer(http_request_t *req, void *data)
{
    gw_t *gw = data;
    const char *id = http_request_path(req) + strlen(CUSTOMERS_PREFIX);
    const char *header = http_request_header(req, "Authorization");
    size_t token_len = 0;
    const char *token = header ? auth_bearer(header, &token_len) : NULL;
    lookup_t *l = calloc(1, sizeof *l);
    if (!l) {
        respond_json_error(req, 503, "unavailable");
        return;
    }
    auth_result_t r = token ? auth_verify(&gw->keys, token, token_len, 0, gw_now_ms() / 1000,
                                          &l->claims)
                            : AUTH_MISSING;
    if (r != AUTH_OK) {
        free(l);
        char body[96];
        int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", auth_result_name(r));
        const http_header_t h[] = {{"WWW-Authenticate", "Bearer"}, {"Cache-Control", "no-store"}};
        http_respond_headers(req, 401, "application/json", h, 2, body, (size_t)n);
        return;
    }
    if (!gwstore_id_ok(id)) {
        free(l);
        respond_json_error(req, 400, "bad_customer_id");
        return;
    }
    l->req = req;
    if (!gw->redis || gwstore_customer(gw->redis, id, API_TIMELINE_MAX, on_document, l) != 0) {
        free(l);
        respond_json_error(req, 503, "unavailable");
    }
}

/* ------------------------------------------------------------------------------------------
 * Static files: "/" is the agent desktop, "/supervisor" the wallboard, "/static/..." the rest.
 * Files are read on each request (they are small, and this way a new UI needs no restart).
 * ---------------------------------------------------------------------------------------- */

static const char *content_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},   {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},               {".png", "image/png"},
        {".ico", "image/x-icon"},                {".json", "application/json"},
        {".wav", "audio/wav"},                   {".woff2", "font/woff2"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* A relative path of [A-Za-z0-9._-/] segments, none empty or starting with '.'. */
static bool safe_relative(const char *p)
{
    if (!*p || strlen(p) > 200)
        return false;
    for (const char *s = p; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-' || *s == '/'))
            return false;
    for (const char *seg = p; seg; seg = strchr(seg, '/') ? strchr(seg, '/') + 1 : NULL)
        if (*seg == '.' || *seg == '/' || *seg == '\0')
            return false;
    return true;
}

static void send_file(http_request_t *req, const char *dir, const char *relative)
{
    char path[4096];
    if (!safe_relative(relative) ||
        snprintf(path, sizeof path, "%s/%s", dir, relative) >= (int)sizeof path) {
        http_respond(req, 404, "text/plain", "not found\n", 10);
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > STATIC_MAX) {
        if (fd >= 0)
            close(fd);
        http_respond(req, 404, "text/plain", "not found\n", 10);
        return;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *body = malloc(size ? size : 1);
    while (body && got < size) {
        ssize_t n = read(fd, body + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!body || got != size) {
        free(body);
        http_respond(req, 500, "text/plain", "cannot read the file\n", 21);
        return;
    }
    /* A page opened with ?token= must not pass its URL on (Referer) to anything, nor be
     * framed (clickjacking). */
    const http_header_t h[] = {{"Cache-Control", "no-cache"},
                               {"X-Content-Type-Options", "nosniff"},
                               {"Referrer-Policy", "no-referrer"},
                               {"Content-Security-Policy",
                                "default-src 'self'; connect-src 'self' ws: wss:; "
                                "img-src 'self' data:; media-src 'self' data:; "
                                "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"}};
    http_respond_headers(req, 200, content_type(path), h, 4, body, size);
    free(body);
}

static void on_agent_page(http_request_t *req, void *data)
{
    gw_t *gw = data;
    send_file(req, gw->cfg.web_dir, "agent.html");
}

static void on_supervisor_page(http_request_t *req, void *data)
{
    gw_t *gw = data;
    send_file(req, gw->cfg.web_dir, "supervisor.html");
}

static void on_static(http_request_t *req, void *data)
{
    gw_t *gw = data;
    send_file(req, gw->cfg.web_dir, http_request_path(req) + 1);
}

int api_routes(gw_t *gw)
{
    http_server_t *srv = gw->svc->http;
    int rc = http_server_route(srv, "GET", CUSTOMERS_PREFIX, HTTP_ROUTE_PREFIX, on_customer, gw);
    if (rc == 0)
        rc = http_server_route(srv, "GET", "/", 0, on_agent_page, gw);
    if (rc == 0)
        rc = http_server_route(srv, "GET", "/supervisor", 0, on_supervisor_page, gw);
    if (rc == 0)
        rc = http_server_route(srv, "GET", "/static/", HTTP_ROUTE_PREFIX, on_static, gw);
    if (rc == 0)
        rc = http_server_route(srv, "GET", "/ws", HTTP_ROUTE_UPGRADE, sessions_on_upgrade, gw);
    return rc;
}
