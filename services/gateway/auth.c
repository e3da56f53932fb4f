/* auth.c - HS256 token checking and minting for the gateway. See auth.h.
 *
 * auth_verify goes step by step, so that each refusal gets its own reason and libjwt only ever
 * sees a token already vetted:
 *   1. the length, before any decoding;
 *   2. three parts of base64url characters, the header and payload not empty;
 *   3. the header: a JSON object, alg "HS256" (anything else is bad_alg), typ "JWT" if present;
 *   4. the signature: our own HMAC-SHA256, compared in constant time;
 *   5. the payload: a JSON object;
 *   6. libjwt's jwt_decode with the key, and its alg pinned to HS256 once more;
 *   7. the claims, read from the payload parsed in 5 and checked against the clock.
 * Why step 4 before libjwt: libjwt 1.10.2 compares signatures with strcmp
 * (jwt_verify_sha_hmac), whose time depends on how many leading characters match. Only tokens
 * whose signature is already known to be right reach it, so its timing tells an attacker
 * nothing. Why steps 2, 3 and 5: jwt_decode says EINVAL for every failure, and its base64
 * decoder stops at the first character it does not know (so junk after a valid prefix would be
 * ignored) and writes a byte past a malloc(0) for an empty part.
 * The payload is not parsed before its signature is checked: only the small header is read
 * from unauthenticated bytes. A JSON object that names a member twice is malformed, since cJSON
 * keeps the first and libjwt's jansson the last. */
#include "auth.h"

#include "jsonw.h"

#include <cJSON.h>
#include <errno.h>
#include <jwt.h>
#include <limits.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SHA256_LEN 32
#define SIG_B64_LEN 43                           /* base64url of 32 bytes, unpadded */
#define DECODED_MAX (AUTH_MAX_TOKEN / 4 * 3 + 3) /* any part of a token, decoded */
#define MAX_DATE 253402300799.0                  /* 9999-12-31T23:59:59Z: keeps dates in int64 */
#define DEFAULT_TTL "8h"

static const char *const result_names[] = {
    [AUTH_OK] = "ok",
    [AUTH_MISSING] = "missing",
    [AUTH_TOO_LONG] = "too_long",
    [AUTH_MALFORMED] = "malformed",
    [AUTH_BAD_SIGNATURE] = "bad_signature",
    [AUTH_BAD_ALG] = "bad_alg",
    [AUTH_EXPIRED] = "expired",
    [AUTH_NOT_YET_VALID] = "not_yet_valid",
    [AUTH_BAD_CLAIMS] = "bad_claims",
    [AUTH_WRONG_ROLE] = "wrong_role",
};

const char *auth_result_name(auth_result_t r)
{
    if ((unsigned)r >= sizeof result_names / sizeof result_names[0])
        return "unknown";
    return result_names[r];
}

/* ------------------------------------------------------------------------------------------
 * base64url (RFC 4648 section 5, without padding, as JWTs use it)
 * ------------------------------------------------------------------------------------------ */

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

static bool is_b64url(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b64url_value((unsigned char)s[i]) < 0)
            return false;
    return true;
}

/* Decodes n base64url characters into out[0 .. cap - 1]. Returns the decoded length, or -1 for
 * a character outside the alphabet, a length of 1 mod 4 (no whole byte), leftover bits that are
 * not zero (a second spelling of the same bytes), or more than cap bytes. */
static long b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    if (n % 4 == 1 || n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0) > cap)
        return -1;
    unsigned acc = 0, bits = 0;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[len++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return acc == 0 ? (long)len : -1;
}

/* Encodes n bytes into out, which has room for 4 * ceil(n / 3) + 1 characters; NUL-terminated.
 * Returns the length. */
static size_t b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t len = 0;
    unsigned acc = 0, bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[len++] = b64url_alphabet[(acc >> bits) & 63];
        }
        acc &= (1u << bits) - 1;
    }
    if (bits > 0)
        out[len++] = b64url_alphabet[(acc << (6 - bits)) & 63];
    out[len] = '\0';
    return len;
}

/* ------------------------------------------------------------------------------------------
 * Parsing helpers
 * ------------------------------------------------------------------------------------------ */

/* 1..AUTH_MAX_ID characters of [A-Za-z0-9._:-]: safe inside a Redis key and a log line. */
static bool is_valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > AUTH_MAX_ID)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* True when two members of obj have the same name. O(n^2), but a part of a token has at most
 * a few hundred members. */
static bool has_duplicate_names(const cJSON *obj)
{
    for (const cJSON *a = obj->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (strcmp(a->string, b->string) == 0)
                return true;
    return false;
}

/* Decodes one base64url part and parses it as a JSON object without repeated names. Returns the
 * object (free with cJSON_Delete) or NULL. */
static cJSON *parse_part(const char *b64, size_t n)
{
    char json[DECODED_MAX + 1];
    long len = b64url_decode(b64, n, (unsigned char *)json, DECODED_MAX);
    /* A NUL inside would end the text early for cJSON: what follows it would go unread. */
    if (len <= 0 || memchr(json, '\0', (size_t)len))
        return NULL;
    json[len] = '\0';
    cJSON *obj = cJSON_ParseWithOpts(json, NULL, true);
    if (obj && (!cJSON_IsObject(obj) || has_duplicate_names(obj))) {
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

/* A NumericDate claim: a JSON number of seconds since the epoch, 0 .. MAX_DATE. Fractions are
 * rounded toward the stricter side by the caller's choice of round_up. Returns 1 with *v set,
 * 0 when absent, -1 when not such a number. */
static int read_date(const cJSON *payload, const char *name, bool round_up, int64_t *v)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(payload, name);
    if (!item)
        return 0;
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble < 0 ||
        item->valuedouble > MAX_DATE)
        return -1;
    *v = (int64_t)(round_up ? ceil(item->valuedouble) : floor(item->valuedouble));
    return 1;
}

/* The optional queues claim: 1..AUTH_MAX_QUEUES valid ids. Returns 0 (n_queues stays 0 when
 * absent) or -1. */
static int read_queues(const cJSON *payload, auth_claims_t *c)
{
    const cJSON *queues = cJSON_GetObjectItemCaseSensitive(payload, "queues");
    if (!queues)
        return 0;
    /* An empty list must not turn into n_queues 0, which means "every queue". */
    if (!cJSON_IsArray(queues) || cJSON_GetArraySize(queues) == 0 ||
        cJSON_GetArraySize(queues) > AUTH_MAX_QUEUES)
        return -1;
    for (const cJSON *q = queues->child; q; q = q->next) {
        if (!cJSON_IsString(q) || !is_valid_id(q->valuestring))
            return -1;
        /* is_valid_id bounded the length to AUTH_MAX_ID. */
        memcpy(c->queues[c->n_queues++], q->valuestring, strlen(q->valuestring) + 1);
    }
    return 0;
}

/* "agent" or "supervisor" as auth_role_t; 0 for anything else. */
static auth_role_t role_from_name(const char *s)
{
    if (strcmp(s, "agent") == 0)
        return AUTH_ROLE_AGENT;
    if (strcmp(s, "supervisor") == 0)
        return AUTH_ROLE_SUPERVISOR;
    return 0;
}

static const char *role_name(auth_role_t role)
{
    return role == AUTH_ROLE_AGENT ? "agent" : role == AUTH_ROLE_SUPERVISOR ? "supervisor" : NULL;
}

/* A secret libjwt and OpenSSL can take: some bytes, a length that fits an int. */
static bool has_usable_secret(const auth_keys_t *keys)
{
    return keys && keys->secret && keys->secret_len > 0 && keys->secret_len <= INT_MAX;
}

/* ------------------------------------------------------------------------------------------
 * Verify
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    const char *header, *payload, *sig;
    size_t header_len, payload_len, sig_len;
} parts_t;

/* Splits token into exactly three parts of base64url characters. Only the signature may be
 * empty here (an alg none token), so that it is refused as bad_alg, not as malformed. */
static bool split_parts(const char *token, size_t len, parts_t *p)
{
    const char *dot1 = memchr(token, '.', len);
    if (!dot1)
        return false;
    const char *dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (!dot2)
        return false;
    p->header = token;
    p->header_len = (size_t)(dot1 - token);
    p->payload = dot1 + 1;
    p->payload_len = (size_t)(dot2 - p->payload);
    p->sig = dot2 + 1;
    p->sig_len = len - (size_t)(p->sig - token);
    return p->header_len > 0 && p->payload_len > 0 && is_b64url(p->header, p->header_len) &&
           is_b64url(p->payload, p->payload_len) && is_b64url(p->sig, p->sig_len);
}

/* The header names alg HS256; typ, when present, is "JWT" in any case (libjwt refuses others). */
static auth_result_t check_header(const parts_t *p)
{
    cJSON *header = parse_part(p->header, p->header_len);
    if (!header)
        return AUTH_MALFORMED;
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(header, "alg");
    const cJSON *typ = cJSON_GetObjectItemCaseSensitive(header, "typ");
    auth_result_t r = AUTH_OK;
    bool typ_ok = !typ || (cJSON_IsString(typ) && strcasecmp(typ->valuestring, "JWT") == 0);
    if (!cJSON_IsString(alg) || !typ_ok)
        r = AUTH_MALFORMED;
    else if (strcmp(alg->valuestring, "HS256") != 0)
        r = AUTH_BAD_ALG;
    cJSON_Delete(header);
    return r;
}

/* HMAC-SHA256 of "header.payload", compared with the signature in constant time. */
static bool signature_matches(const auth_keys_t *keys, const parts_t *p)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    size_t signed_len = p->header_len + 1 + p->payload_len;
    if (!HMAC(EVP_sha256(), keys->secret, (int)keys->secret_len, (const unsigned char *)p->header,
              signed_len, mac, &mac_len) ||
        mac_len != SHA256_LEN)
        return false;
    char want[SIG_B64_LEN + 2];
    b64url_encode(mac, mac_len, want);
    /* The length is no secret; the characters are compared without an early exit. */
    return p->sig_len == SIG_B64_LEN && CRYPTO_memcmp(want, p->sig, SIG_B64_LEN) == 0;
}

/* libjwt's own decode with the key, as a second opinion after ours. Never with key NULL: that
 * would accept any token unchecked. */
static auth_result_t libjwt_agrees(const auth_keys_t *keys, const char *token, size_t len)
{
    char copy[AUTH_MAX_TOKEN + 1]; /* jwt_decode wants a C string */
    memcpy(copy, token, len);
    copy[len] = '\0';
    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, copy, keys->secret, (int)keys->secret_len) != 0 || !jwt)
        return AUTH_MALFORMED; /* our checks passed, so its JSON reading disagreed with ours */
    /* It takes the algorithm from the header: an HS384 token with our secret decodes fine. */
    auth_result_t r = jwt_get_alg(jwt) == JWT_ALG_HS256 ? AUTH_OK : AUTH_BAD_ALG;
    jwt_free(jwt);
    return r;
}

/* Reads and checks the claims of a payload whose signature is good. */
static auth_result_t check_claims(const cJSON *payload, const auth_keys_t *keys,
                                  auth_role_t wanted_role, int64_t now_s, auth_claims_t *c)
{
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(payload, "sub");
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(payload, "role");
    if (read_date(payload, "exp", false, &c->exp) != 1 ||
        read_date(payload, "nbf", true, &c->nbf) < 0 ||
        read_date(payload, "iat", false, &c->iat) < 0)
        return AUTH_BAD_CLAIMS;
    if (!cJSON_IsString(sub) || !is_valid_id(sub->valuestring) || !cJSON_IsString(role) ||
        read_queues(payload, c) < 0)
        return AUTH_BAD_CLAIMS;
    memcpy(c->sub, sub->valuestring, strlen(sub->valuestring) + 1);

    /* RFC 7519: valid while now < exp, and from nbf on; both widened by the skew. The dates
     * are within 0 .. MAX_DATE, so with now clamped to that range nothing can overflow. */
    int64_t now = now_s < 0 ? 0 : now_s > (int64_t)MAX_DATE ? (int64_t)MAX_DATE : now_s;
    if (now >= c->exp + (int64_t)keys->skew_s)
        return AUTH_EXPIRED;
    if (c->nbf != 0 && now + (int64_t)keys->skew_s < c->nbf)
        return AUTH_NOT_YET_VALID;

    c->role = role_from_name(role->valuestring);
    if (c->role == 0 || (wanted_role != 0 && c->role != wanted_role))
        return AUTH_WRONG_ROLE;
    return AUTH_OK;
}

auth_result_t auth_verify(const auth_keys_t *keys, const char *token, size_t len,
                          auth_role_t wanted_role, int64_t now_s, auth_claims_t *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!token || len == 0)
        return AUTH_MISSING;
    if (len > AUTH_MAX_TOKEN)
        return AUTH_TOO_LONG;
    parts_t p;
    if (!split_parts(token, len, &p))
        return AUTH_MALFORMED;
    auth_result_t r = check_header(&p);
    if (r != AUTH_OK)
        return r;
    if (!has_usable_secret(keys) || !signature_matches(keys, &p))
        return AUTH_BAD_SIGNATURE;
    cJSON *payload = parse_part(p.payload, p.payload_len);
    if (!payload)
        return AUTH_MALFORMED;
    auth_claims_t claims = {0};
    r = libjwt_agrees(keys, token, len);
    if (r == AUTH_OK)
        r = check_claims(payload, keys, wanted_role, now_s, &claims);
    cJSON_Delete(payload);
    if (r == AUTH_OK && out)
        *out = claims;
    return r;
}

/* ------------------------------------------------------------------------------------------
 * Mint
 * ------------------------------------------------------------------------------------------ */

/* {"queues":[...]} for jwt_add_grants_json. The names are valid ids, so need no escaping, but
 * the writer escapes anyway. Returns 0 or -1 when it does not fit. */
static int queues_json(const char *const *queues, size_t n, char *buf, size_t cap)
{
    jsonw_t w;
    jsonw_init(&w, buf, cap);
    jsonw_object_begin(&w);
    jsonw_key(&w, "queues");
    jsonw_array_begin(&w);
    for (size_t i = 0; i < n; i++)
        jsonw_string(&w, queues[i]);
    jsonw_array_end(&w);
    jsonw_object_end(&w);
    return jsonw_finish(&w) < 0 ? -1 : 0;
}

static bool mint_args_ok(const auth_keys_t *keys, const char *sub, auth_role_t role,
                         const char *const *queues, size_t n_queues, int64_t now_s, int64_t ttl_s)
{
    if (!has_usable_secret(keys) || !sub || !is_valid_id(sub) || !role_name(role))
        return false;
    if (ttl_s <= 0 || ttl_s > AUTH_MAX_TTL_S || now_s < 0 || now_s + ttl_s > (int64_t)MAX_DATE)
        return false;
    if (n_queues > AUTH_MAX_QUEUES || (n_queues > 0 && !queues))
        return false;
    for (size_t i = 0; i < n_queues; i++)
        if (!queues[i] || !is_valid_id(queues[i]))
            return false;
    return true;
}

int auth_mint(const auth_keys_t *keys, const char *sub, auth_role_t role,
              const char *const *queues, size_t n_queues, int64_t now_s, int64_t ttl_s,
              char *out, size_t cap)
{
    if (!out || cap == 0 || !mint_args_ok(keys, sub, role, queues, n_queues, now_s, ttl_s))
        return -1;
    char qjson[AUTH_MAX_QUEUES * (AUTH_MAX_ID + 3) + 16];
    if (n_queues > 0 && queues_json(queues, n_queues, qjson, sizeof qjson) < 0)
        return -1;
    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0)
        return -1;
    int rc = jwt_set_alg(jwt, JWT_ALG_HS256, keys->secret, (int)keys->secret_len);
    rc = rc ? rc : jwt_add_grant(jwt, "sub", sub);
    rc = rc ? rc : jwt_add_grant(jwt, "role", role_name(role));
    rc = rc ? rc : jwt_add_grant_int(jwt, "iat", (long)now_s);
    rc = rc ? rc : jwt_add_grant_int(jwt, "exp", (long)(now_s + ttl_s));
    if (rc == 0 && n_queues > 0)
        rc = jwt_add_grants_json(jwt, qjson);
    char *token = rc == 0 ? jwt_encode_str(jwt) : NULL; /* malloc'ed by libjwt */
    jwt_free(jwt);
    if (!token)
        return -1;
    size_t len = strlen(token);
    int result = -1;
    /* Within AUTH_MAX_TOKEN by the limits on its claims; checked so it is sure to verify. */
    if (len < cap && len <= AUTH_MAX_TOKEN) {
        memcpy(out, token, len + 1);
        result = (int)len;
    }
    free(token);
    return result;
}

/* ------------------------------------------------------------------------------------------
 * Lifetimes and headers
 * ------------------------------------------------------------------------------------------ */

int64_t auth_parse_ttl(const char *s)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    int64_t n = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (n > AUTH_MAX_TTL_S) /* already too long; stop before the number can overflow */
            return -1;
        n = n * 10 + (*s - '0');
    }
    int64_t unit_s;
    switch (*s) {
    case '\0': unit_s = 1; break;
    case 's': unit_s = 1; break;
    case 'm': unit_s = 60; break;
    case 'h': unit_s = 3600; break;
    case 'd': unit_s = 86400; break;
    default: return -1;
    }
    if (*s != '\0' && s[1] != '\0')
        return -1;
    if (n == 0 || n > AUTH_MAX_TTL_S / unit_s)
        return -1;
    return n * unit_s;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

const char *auth_bearer(const char *header_value, size_t *len)
{
    if (len)
        *len = 0;
    if (!header_value)
        return NULL;
    const char *p = header_value;
    while (is_ows(*p))
        p++;
    /* RFC 7235: the scheme is case-insensitive; it ends at white space or the end. */
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != '\0' && !is_ows(p[6])))
        return NULL;
    p += 6;
    while (is_ows(*p))
        p++;
    size_t n = strlen(p);
    while (n > 0 && is_ows(p[n - 1]))
        n--;
    if (len)
        *len = n;
    return p;
}

/* At least AUTH_MIN_SECRET bytes: an HS256 key shorter than its 32-byte hash is the weak
 * link. Returns 0, or -1 with a one-line reason in err. */
static int check_secret_len(size_t n, char *err, size_t errlen)
{
    if (n >= AUTH_MIN_SECRET)
        return 0;
    if (err && errlen > 0) {
        if (n == 0)
            snprintf(err, errlen, "the token secret is not set");
        else
            snprintf(err, errlen,
                     "the token secret is %zu bytes; at least %d are needed "
                     "(e.g. openssl rand -base64 48)",
                     n, AUTH_MIN_SECRET);
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------
 * The token subcommand
 * ------------------------------------------------------------------------------------------ */

const char auth_token_usage[] =
    "  token --sub ID --role agent|supervisor [--ttl 8h] [--queues q1,q2]\n"
    "                   print a signed access token (secret from the configuration)\n"
    "                   --ttl: 90s, 30m, 8h, 2d or seconds, at most 30 days (default 8h)\n"
    "                   --queues: a supervisor's queues, comma-separated (default all)\n";

typedef struct {
    const char *sub, *role, *ttl, *queues; /* as given (borrowed from argv) */
    auth_role_t role_id;
    int64_t ttl_s;
    size_t n_queues;
    const char *queue_names[AUTH_MAX_QUEUES];    /* into names_buf */
    char names_buf[AUTH_MAX_QUEUES * (AUTH_MAX_ID + 1)];
} token_args_t;

/* Reads the --name value pairs. Returns 0, 1 for --help, or 2 after printing the bad one. */
static int parse_token_args(int argc, char **argv, token_args_t *a)
{
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0)
            return 1;
        const char **slot = strcmp(opt, "--sub") == 0      ? &a->sub
                            : strcmp(opt, "--role") == 0   ? &a->role
                            : strcmp(opt, "--ttl") == 0    ? &a->ttl
                            : strcmp(opt, "--queues") == 0 ? &a->queues
                                                           : NULL;
        if (!slot) {
            fprintf(stderr, "token: unknown argument '%s' (see --help)\n", opt);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "token: %s needs a value\n", opt);
            return 2;
        }
        *slot = argv[++i];
    }
    return 0;
}

/* Splits a->queues ("q1,q2") into a->queue_names. Returns 0, or -1 after printing why: an
 * empty or invalid name, or too many. */
static int split_queues(token_args_t *a)
{
    if (strlen(a->queues) >= sizeof a->names_buf) {
        fprintf(stderr, "token: --queues: too long (at most %d names)\n", AUTH_MAX_QUEUES);
        return -1;
    }
    strcpy(a->names_buf, a->queues);
    for (char *name = a->names_buf, *next; name; name = next) {
        next = strchr(name, ',');
        if (next)
            *next++ = '\0';
        if (a->n_queues == AUTH_MAX_QUEUES) {
            fprintf(stderr, "token: --queues: more than %d names\n", AUTH_MAX_QUEUES);
            return -1;
        }
        if (!is_valid_id(name)) {
            fprintf(stderr, "token: --queues: '%s' is not 1-%d characters of A-Z a-z 0-9 . _ : -\n",
                    name, AUTH_MAX_ID);
            return -1;
        }
        a->queue_names[a->n_queues++] = name;
    }
    return 0;
}

/* Checks the arguments and fills role_id, ttl_s and the queue names. Returns 0, or -1 after
 * printing one line naming the bad argument. */
static int check_token_args(token_args_t *a)
{
    if (!a->sub || !is_valid_id(a->sub)) {
        fprintf(stderr, "token: --sub '%s': 1-%d characters of A-Z a-z 0-9 . _ : - required\n",
                a->sub ? a->sub : "", AUTH_MAX_ID);
        return -1;
    }
    a->role_id = a->role ? role_from_name(a->role) : 0;
    if (a->role_id == 0) {
        fprintf(stderr, "token: --role '%s': agent or supervisor required\n",
                a->role ? a->role : "");
        return -1;
    }
    a->ttl_s = auth_parse_ttl(a->ttl);
    if (a->ttl_s < 0) {
        fprintf(stderr, "token: --ttl '%s': like 90s, 30m, 8h, 2d, at most 30 days\n", a->ttl);
        return -1;
    }
    if (a->queues && a->role_id != AUTH_ROLE_SUPERVISOR) {
        fprintf(stderr, "token: --queues is for supervisors only\n");
        return -1;
    }
    return a->queues ? split_queues(a) : 0;
}

int auth_token_command(int argc, char **argv, const auth_keys_t *keys)
{
    token_args_t a = {.ttl = DEFAULT_TTL};
    int rc = parse_token_args(argc, argv, &a);
    if (rc == 1) {
        printf("usage: integral-gateway token --sub ID --role ROLE [--ttl T] [--queues Q]\n%s",
               auth_token_usage);
        return 0;
    }
    if (rc != 0 || check_token_args(&a) < 0)
        return 2;
    char err[160];
    if (check_secret_len(keys && keys->secret ? keys->secret_len : 0, err, sizeof err) < 0) {
        fprintf(stderr, "token: %s\n", err);
        return 2;
    }
    char token[AUTH_MAX_TOKEN + 1];
    if (auth_mint(keys, a.sub, a.role_id, a.queue_names, a.n_queues, (int64_t)time(NULL), a.ttl_s,
                  token, sizeof token) < 0) {
        fprintf(stderr, "token: could not mint a token\n"); /* arguments were checked: unexpected */
        return 2;
    }
    printf("%s\n", token);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "token: cannot write the token: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Configuration
 * ------------------------------------------------------------------------------------------ */

int auth_check_secret(const char *secret, char *err, size_t errlen)
{
    return check_secret_len(secret ? strlen(secret) : 0, err, errlen);
}
