/* auth.h - the gateway's access tokens: checking the token every WebSocket connection and every
 * /api request carries, and minting tokens for demos and tests.
 *
 * A token is an HS256 JWT (RFC 7519) signed with a secret from the configuration or the
 * environment, never from code. Its payload:
 *     {"sub": "A017", "role": "agent", "iat": 1700000000, "exp": 1700028800}
 *     {"sub": "S002", "role": "supervisor", "exp": 1700028800, "queues": ["billing", "vip"]}
 *   sub     required; the agent's or supervisor's id: 1..AUTH_MAX_ID characters of
 *           [A-Za-z0-9._:-], since it becomes part of Redis keys
 *   role    required; "agent" or "supervisor"
 *   exp     required; seconds since the epoch
 *   nbf     optional; not valid before, seconds since the epoch
 *   iat     optional; when it was issued (recorded, not checked)
 *   queues  optional; a supervisor's scope: 1..AUTH_MAX_QUEUES names with sub's charset. An
 *           empty array is refused, since "no queues" must not read as "all queues".
 *
 * Every refusal has its own auth_result_t and a stable name (auth_result_name) for the
 * protocol's error messages and the metrics' labels. The header must say alg HS256: "none",
 * HS384/HS512 (even when signed with the same secret) and RS256 are refused as bad_alg. exp and
 * nbf are checked here with a small allowed clock skew (libjwt 1.10.2 checks neither).
 *
 * Nothing here does I/O except auth_token_command, which prints. */
#ifndef INTEGRAL_GATEWAY_AUTH_H
#define INTEGRAL_GATEWAY_AUTH_H

#include <stddef.h>
#include <stdint.h>

typedef enum { AUTH_ROLE_AGENT = 1, AUTH_ROLE_SUPERVISOR = 2 } auth_role_t;

#define AUTH_MAX_TOKEN 4096    /* bytes; longer tokens are refused before any decoding */
#define AUTH_MAX_ID 64         /* characters of sub and of each queue name */
#define AUTH_MAX_QUEUES 32     /* names in a supervisor's queues claim */
#define AUTH_MIN_SECRET 32     /* bytes of an acceptable secret (auth_check_secret) */
#define AUTH_DEFAULT_SKEW_S 30 /* allowed clock skew for exp and nbf */
#define AUTH_MAX_TTL_S 2592000 /* 30 days: the longest lifetime auth_parse_ttl accepts */

typedef struct {
    char sub[AUTH_MAX_ID + 1];
    auth_role_t role;
    int64_t exp, nbf, iat; /* seconds since epoch; nbf/iat 0 when absent */
    size_t n_queues;       /* 0 = no restriction (supervisor sees all queues) */
    char queues[AUTH_MAX_QUEUES][AUTH_MAX_ID + 1];
} auth_claims_t;

typedef enum {
    AUTH_OK = 0,
    AUTH_MISSING,       /* no token, or an empty one */
    AUTH_TOO_LONG,      /* more than AUTH_MAX_TOKEN bytes */
    AUTH_MALFORMED,     /* not three base64url parts, or header/payload not a JSON object */
    AUTH_BAD_SIGNATURE, /* not signed with our secret (or no secret to check it with) */
    AUTH_BAD_ALG,       /* header alg is not HS256: none, HS384, HS512, RS256, ... */
    AUTH_EXPIRED,       /* now >= exp + skew */
    AUTH_NOT_YET_VALID, /* now + skew < nbf */
    AUTH_BAD_CLAIMS,    /* sub, role, exp, nbf, iat or queues missing or of the wrong shape */
    AUTH_WRONG_ROLE,    /* role is not agent|supervisor, or not the one the endpoint wants */
} auth_result_t;

/* A stable lower-case name for r: "ok", "missing", "too_long", "malformed", "bad_signature",
 * "bad_alg", "expired", "not_yet_valid", "bad_claims", "wrong_role"; "unknown" otherwise.
 * The string is static. */
const char *auth_result_name(auth_result_t r);

/* The verification key. secret is borrowed: it must outlive every call that uses the keys.
 * skew_s is the allowed clock skew for exp and nbf (AUTH_DEFAULT_SKEW_S is the usual value). */
typedef struct {
    const unsigned char *secret;
    size_t secret_len;
    unsigned skew_s;
} auth_keys_t;

/* Checks len bytes of token (need not be NUL-terminated; NULL or len 0 is AUTH_MISSING) at time
 * now_s (time(NULL) in production, fixed in tests). wanted_role 0 accepts either role; otherwise
 * a token of the other role is AUTH_WRONG_ROLE. Returns AUTH_OK and fills *out, or the first
 * reason to refuse (*out is then zeroed). keys without a secret verify nothing: every token is
 * AUTH_BAD_SIGNATURE. Allocates only temporarily; safe to call from any thread. */
auth_result_t auth_verify(const auth_keys_t *keys, const char *token, size_t len,
                          auth_role_t wanted_role, int64_t now_s, auth_claims_t *out);

/* Mints an HS256 token for sub and role with iat = now_s and exp = now_s + ttl_s, and the
 * queues claim when n_queues > 0 (queues[0 .. n_queues - 1] are borrowed for the call). Writes
 * it NUL-terminated into out[0 .. cap - 1]. Returns its length, or -1 when an argument is bad
 * (no secret, sub or a queue name not a valid id, unknown role, ttl_s <= 0 or > AUTH_MAX_TTL_S,
 * more than AUTH_MAX_QUEUES queues) or the token does not fit in cap - 1 bytes. */
int auth_mint(const auth_keys_t *keys, const char *sub, auth_role_t role, const char *const *queues,
              size_t n_queues, int64_t now_s, int64_t ttl_s, char *out, size_t cap);

/* Parses a lifetime: digits with an optional unit s, m, h or d ("8h", "30m", "90s", "2d",
 * "3600" = seconds). Returns seconds, or -1 when the text is not that, is 0, or is more than
 * AUTH_MAX_TTL_S. */
int64_t auth_parse_ttl(const char *s);

/* Finds the token in the value of an Authorization header, "Bearer <token>" (the scheme in any
 * case, spaces or tabs around). Returns a pointer into header_value and its length in *len,
 * excluding trailing white space; the token may be empty (auth_verify then says AUTH_MISSING).
 * Returns NULL (and *len 0) when the value is NULL or not of the Bearer scheme. */
const char *auth_bearer(const char *header_value, size_t *len);

/* The `token` subcommand, as a service's command hook gets it (argv[0] == "token"):
 *     token --sub A017 --role agent [--ttl 8h] [--queues q1,q2]
 * --ttl defaults to 8h; --queues is for supervisors only. Prints the token and a newline on
 * stdout and returns 0. A bad or missing argument, or a secret that auth_check_secret refuses,
 * prints one line on stderr naming it and returns 2. --help prints the usage on stdout and
 * returns 0. keys is borrowed (the caller reads the secret from config/env). */
int auth_token_command(int argc, char **argv, const auth_keys_t *keys);

/* The usage lines of the token subcommand, for a service's --help (command_usage). */
extern const char auth_token_usage[];

/* Checks a configured secret (NUL-terminated): at least AUTH_MIN_SECRET bytes. Returns 0, or
 * -1 with a one-line reason in err[0 .. errlen - 1]. */
int auth_check_secret(const char *secret, char *err, size_t errlen);

#endif
