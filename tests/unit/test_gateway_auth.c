/* test_gateway_auth.c - the gateway's token checking: mint and verify round trips, every kind of
 * refusal, lifetimes, Authorization headers, the token subcommand and the secret check.
 *
 * Refused tokens are built here by hand with OpenSSL's HMAC and base64, not with libjwt's
 * encoder, so that they do not depend on the library under test: a test names the header and
 * payload JSON and the hash to sign with. hand_built_token_is_accepted shows the builder
 * makes tokens auth_verify accepts, so each refusal below is due to the one thing changed. */
#include "auth.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SECRET "test-secret-0123456789-abcdefghijklmnop" /* 39 bytes */
#define NOW 1700000000
#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static const auth_keys_t keys = {(const unsigned char *)SECRET, sizeof SECRET - 1, 30};

/* ------------------------------------------------------------------------------------------
 * Building tokens by hand
 * ------------------------------------------------------------------------------------------ */

/* base64url without padding of n bytes, appended at out + strlen(out). */
static void append_b64url(char *out, const unsigned char *in, size_t n)
{
    unsigned char std[8192];
    assert_true(n < sizeof std / 4 * 3 - 3);
    int len = EVP_EncodeBlock(std, in, (int)n);
    char *o = out + strlen(out);
    for (int i = 0; i < len && std[i] != '='; i++)
        *o++ = std[i] == '+' ? '-' : std[i] == '/' ? '_' : (char)std[i];
    *o = '\0';
}

/* The signature of the text so far in out (header.payload), appended after a dot; md NULL
 * leaves it empty. */
static void append_signature(char *out, const EVP_MD *md, const char *secret)
{
    size_t signed_len = strlen(out);
    strcat(out, ".");
    if (!md)
        return;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    assert_non_null(HMAC(md, secret, (int)strlen(secret), (const unsigned char *)out, signed_len,
                         mac, &mac_len));
    append_b64url(out, mac, mac_len);
}

/* header.payload.signature from n bytes of header and payload each, signed with md (HMAC) and
 * secret. Returns a static buffer, valid until the next call. */
static const char *make_token_n(const char *header, size_t header_len, const char *payload,
                                size_t payload_len, const EVP_MD *md, const char *secret)
{
    static char out[16384];
    out[0] = '\0';
    append_b64url(out, (const unsigned char *)header, header_len);
    strcat(out, ".");
    append_b64url(out, (const unsigned char *)payload, payload_len);
    append_signature(out, md, secret);
    return out;
}

static const char *make_token(const char *header, const char *payload, const EVP_MD *md,
                              const char *secret)
{
    return make_token_n(header, strlen(header), payload, strlen(payload), md, secret);
}

static const char *hs256_token(const char *payload)
{
    return make_token(HS256, payload, EVP_sha256(), SECRET);
}

static auth_result_t verify_as(const char *token, auth_role_t wanted, auth_claims_t *c)
{
    return auth_verify(&keys, token, strlen(token), wanted, NOW, c);
}

static auth_result_t verify(const char *token)
{
    auth_claims_t c;
    return verify_as(token, 0, &c);
}

/* A correctly signed HS256 token with this payload (printf format), checked for any role. */
static auth_result_t verify_payload(const char *fmt, ...)
{
    char payload[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(payload, sizeof payload, fmt, ap);
    va_end(ap);
    return verify(hs256_token(payload));
}

#define AGENT_PAYLOAD "{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":%d}"

/* ------------------------------------------------------------------------------------------
 * Round trips and the accepted shape
 * ------------------------------------------------------------------------------------------ */

static void minted_agent_token_verifies(void **state)
{
    char token[AUTH_MAX_TOKEN + 1];
    int len = auth_mint(&keys, "A017", AUTH_ROLE_AGENT, NULL, 0, NOW, 8 * 3600, token,
                        sizeof token);
    assert_true(len > 0);
    assert_int_equal(len, strlen(token));
    auth_claims_t c;
    assert_int_equal(auth_verify(&keys, token, (size_t)len, AUTH_ROLE_AGENT, NOW, &c), AUTH_OK);
    assert_string_equal(c.sub, "A017");
    assert_int_equal(c.role, AUTH_ROLE_AGENT);
    assert_int_equal(c.iat, NOW);
    assert_int_equal(c.exp, NOW + 8 * 3600);
    assert_int_equal(c.nbf, 0);
    assert_int_equal(c.n_queues, 0);
}

static void minted_supervisor_token_keeps_its_queues(void **state)
{
    const char *queues[] = {"billing", "vip.de", "q:3"};
    char token[AUTH_MAX_TOKEN + 1];
    int len = auth_mint(&keys, "S-002", AUTH_ROLE_SUPERVISOR, queues, 3, NOW, 60, token,
                        sizeof token);
    assert_true(len > 0);
    auth_claims_t c;
    assert_int_equal(verify_as(token, AUTH_ROLE_SUPERVISOR, &c), AUTH_OK);
    assert_string_equal(c.sub, "S-002");
    assert_int_equal(c.role, AUTH_ROLE_SUPERVISOR);
    assert_int_equal(c.n_queues, 3);
    assert_string_equal(c.queues[0], "billing");
    assert_string_equal(c.queues[1], "vip.de");
    assert_string_equal(c.queues[2], "q:3");
}

static void minted_token_is_refused_by_another_secret(void **state)
{
    char token[AUTH_MAX_TOKEN + 1];
    assert_true(auth_mint(&keys, "A017", AUTH_ROLE_AGENT, NULL, 0, NOW, 60, token,
                          sizeof token) > 0);
    const char other[] = "another-secret-0123456789-abcdefghijkl";
    auth_keys_t k2 = {(const unsigned char *)other, sizeof other - 1, 30};
    auth_claims_t c;
    assert_int_equal(auth_verify(&k2, token, strlen(token), 0, NOW, &c), AUTH_BAD_SIGNATURE);
}

static void hand_built_token_is_accepted(void **state)
{
    auth_claims_t c;
    const char *t = hs256_token("{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100,"
                                "\"nbf\":1699999990,\"iat\":1699999980,\"extra\":{\"x\":[1]}}");
    assert_int_equal(verify_as(t, AUTH_ROLE_AGENT, &c), AUTH_OK);
    assert_string_equal(c.sub, "A017");
    assert_int_equal(c.exp, 1700000100);
    assert_int_equal(c.nbf, 1699999990);
    assert_int_equal(c.iat, 1699999980);
    /* A header without typ is fine too, and so is typ in another case. */
    const char *payload = "{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}";
    assert_int_equal(verify(make_token("{\"alg\":\"HS256\"}", payload, EVP_sha256(), SECRET)),
                     AUTH_OK);
    assert_int_equal(verify(make_token("{\"typ\":\"jwt\",\"alg\":\"HS256\"}", payload,
                                       EVP_sha256(), SECRET)),
                     AUTH_OK);
}

static void token_need_not_be_nul_terminated(void **state)
{
    const char *t = hs256_token("{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}");
    char buf[AUTH_MAX_TOKEN + 8];
    size_t len = strlen(t);
    memcpy(buf, t, len);
    memcpy(buf + len, "xyz", 3); /* what follows the token is not part of it */
    auth_claims_t c;
    assert_int_equal(auth_verify(&keys, buf, len, 0, NOW, &c), AUTH_OK);
    assert_int_equal(auth_verify(&keys, buf, len + 3, 0, NOW, &c), AUTH_BAD_SIGNATURE);
}

static void claims_are_zeroed_on_refusal(void **state)
{
    auth_claims_t c;
    memset(&c, 0x5a, sizeof c);
    assert_int_equal(verify_as(hs256_token("{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1}"),
                               0, &c),
                     AUTH_EXPIRED);
    auth_claims_t zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&c, &zero, sizeof c);
    /* out may be NULL when only the verdict matters. */
    const char *t = hs256_token("{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}");
    assert_int_equal(auth_verify(&keys, t, strlen(t), 0, NOW, NULL), AUTH_OK);
}

/* ------------------------------------------------------------------------------------------
 * Refusals: shape
 * ------------------------------------------------------------------------------------------ */

static void missing_or_empty_token_is_missing(void **state)
{
    auth_claims_t c;
    assert_int_equal(auth_verify(&keys, NULL, 0, 0, NOW, &c), AUTH_MISSING);
    assert_int_equal(auth_verify(&keys, NULL, 10, 0, NOW, &c), AUTH_MISSING);
    assert_int_equal(auth_verify(&keys, "", 0, 0, NOW, &c), AUTH_MISSING);
    assert_int_equal(auth_verify(&keys, "abc", 0, 0, NOW, &c), AUTH_MISSING);
}

static void token_over_the_cap_is_too_long_even_when_valid(void **state)
{
    /* Grow a padding claim until the token passes AUTH_MAX_TOKEN: up to the cap it verifies,
     * one step past it is too_long, signature and all. */
    static char payload[4096];
    bool saw_ok_near_cap = false, saw_too_long = false;
    for (int pad = 2900; pad < 3100 && !saw_too_long; pad++) {
        snprintf(payload, sizeof payload,
                 "{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100,\"pad\":\"%0*d\"}",
                 pad, 0);
        const char *t = hs256_token(payload);
        if (strlen(t) <= AUTH_MAX_TOKEN) {
            assert_int_equal(verify(t), AUTH_OK);
            saw_ok_near_cap = strlen(t) > AUTH_MAX_TOKEN - 4;
        } else {
            assert_int_equal(verify(t), AUTH_TOO_LONG);
            saw_too_long = true;
        }
    }
    assert_true(saw_ok_near_cap);
    assert_true(saw_too_long);
    /* Garbage over the cap is too_long as well: the length is checked before anything else. */
    char junk[AUTH_MAX_TOKEN + 2];
    memset(junk, '!', sizeof junk);
    auth_claims_t c;
    assert_int_equal(auth_verify(&keys, junk, AUTH_MAX_TOKEN + 1, 0, NOW, &c), AUTH_TOO_LONG);
    assert_int_equal(auth_verify(&keys, junk, AUTH_MAX_TOKEN, 0, NOW, &c), AUTH_MALFORMED);
}

static void token_without_three_parts_is_malformed(void **state)
{
    const char *good = hs256_token("{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}");
    char two[AUTH_MAX_TOKEN], four[AUTH_MAX_TOKEN + 8];
    snprintf(two, sizeof two, "%.*s", (int)(strrchr(good, '.') - good), good); /* h.p */
    snprintf(four, sizeof four, "%s.AAAA", good);                              /* h.p.s.x */
    assert_int_equal(verify("abc"), AUTH_MALFORMED);
    assert_int_equal(verify(two), AUTH_MALFORMED);
    assert_int_equal(verify(four), AUTH_MALFORMED);
    assert_int_equal(verify(".."), AUTH_MALFORMED);
    assert_int_equal(verify(strchr(good, '.')), AUTH_MALFORMED); /* .p.s: empty header */
}

static void token_with_bad_base64_is_malformed(void **state)
{
    const char *good = hs256_token("{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}");
    char t[AUTH_MAX_TOKEN];
    const char bad_chars[] = {'+', '/', '=', '!', ' ', '\n'};
    for (size_t i = 0; i < sizeof bad_chars; i++) {
        snprintf(t, sizeof t, "%s", good);
        t[5] = bad_chars[i]; /* in the header */
        assert_int_equal(verify(t), AUTH_MALFORMED);
        snprintf(t, sizeof t, "%s", good);
        t[strlen(t) - 3] = bad_chars[i]; /* in the signature */
        assert_int_equal(verify(t), AUTH_MALFORMED);
    }
    /* Padding, as plain base64 would add it, is not base64url as JWTs use it. */
    snprintf(t, sizeof t, "%s=", good);
    assert_int_equal(verify(t), AUTH_MALFORMED);
    /* A header of 5 characters (1 mod 4) holds no whole number of bytes. */
    assert_int_equal(verify("eyJhb.e30.AAAA"), AUTH_MALFORMED);
    /* A NUL byte inside the given length. */
    snprintf(t, sizeof t, "%s", good);
    t[3] = '\0';
    auth_claims_t c;
    assert_int_equal(auth_verify(&keys, t, strlen(good), 0, NOW, &c), AUTH_MALFORMED);
}

static void base64_with_a_second_spelling_is_malformed(void **state)
{
    /* Correctly signed over the text as sent, but the text is not canonical base64url. */
    const char *payload = "{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}";
    char t[AUTH_MAX_TOKEN] = "";
    const char header[] = "{\"alg\":\"HS256\" }"; /* 16 bytes: 22 characters, 4 spare bits */
    append_b64url(t, (const unsigned char *)header, strlen(header));
    char *last = t + strlen(t) - 1;
    assert_int_equal(*last, 'Q'); /* '}' = 0x7d: 'Q' = 01 0000, its low 2 bits and 4 spare */
    *last = 'R';                  /* 01 0001: the same bytes once the spare bits are dropped */
    strcat(t, ".");
    append_b64url(t, (const unsigned char *)payload, strlen(payload));
    append_signature(t, EVP_sha256(), SECRET);
    assert_int_equal(verify(t), AUTH_MALFORMED);
    /* One character more than whole bytes need (1 mod 4), even if its bits are zero. */
    t[0] = '\0';
    append_b64url(t, (const unsigned char *)HS256, strlen(HS256));
    strcat(t, "A.");
    append_b64url(t, (const unsigned char *)payload, strlen(payload));
    append_signature(t, EVP_sha256(), SECRET);
    assert_int_equal(verify(t), AUTH_MALFORMED);
}

static void nul_inside_decoded_json_is_malformed(void **state)
{
    /* cJSON would stop reading at the NUL and never see what follows. */
    const char header[] = "{\"alg\":\"HS256\"}\0{\"alg\":\"none\"}";
    const char payload[] = "{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}\0junk";
    const char *good_payload = "{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}";
    assert_int_equal(verify(make_token_n(header, sizeof header - 1, good_payload,
                                         strlen(good_payload), EVP_sha256(), SECRET)),
                     AUTH_MALFORMED);
    assert_int_equal(verify(make_token_n(HS256, strlen(HS256), payload, sizeof payload - 1,
                                         EVP_sha256(), SECRET)),
                     AUTH_MALFORMED);
}

static void header_or_payload_that_is_not_a_json_object_is_malformed(void **state)
{
    const char *payload = "{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}";
    assert_int_equal(verify(make_token("{\"alg\":\"HS256\"", payload, EVP_sha256(), SECRET)),
                     AUTH_MALFORMED);
    assert_int_equal(verify(make_token("[\"HS256\"]", payload, EVP_sha256(), SECRET)),
                     AUTH_MALFORMED);
    assert_int_equal(verify(make_token("{\"alg\":\"HS256\"} x", payload, EVP_sha256(), SECRET)),
                     AUTH_MALFORMED);
    /* Correctly signed, but the payload is not a JSON object. */
    assert_int_equal(verify(hs256_token("not json")), AUTH_MALFORMED);
    assert_int_equal(verify(hs256_token("[1,2]")), AUTH_MALFORMED);
    assert_int_equal(verify(hs256_token("{\"sub\":\"A017\",")), AUTH_MALFORMED);
    assert_int_equal(verify(hs256_token("\"A017\"")), AUTH_MALFORMED);
}

static void header_without_alg_or_with_other_typ_is_malformed(void **state)
{
    const char *payload = "{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}";
    assert_int_equal(verify(make_token("{\"typ\":\"JWT\"}", payload, EVP_sha256(), SECRET)),
                     AUTH_MALFORMED);
    assert_int_equal(verify(make_token("{\"alg\":256}", payload, EVP_sha256(), SECRET)),
                     AUTH_MALFORMED);
    assert_int_equal(verify(make_token("{\"alg\":\"HS256\",\"typ\":\"JWE\"}", payload,
                                       EVP_sha256(), SECRET)),
                     AUTH_MALFORMED);
}

static void repeated_member_names_are_malformed(void **state)
{
    /* cJSON reads the first of two equal names, jansson (libjwt) the last: refuse both. */
    assert_int_equal(verify(make_token("{\"alg\":\"HS256\",\"alg\":\"HS512\"}",
                                       "{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}",
                                       EVP_sha256(), SECRET)),
                     AUTH_MALFORMED);
    assert_int_equal(verify_payload("{\"sub\":\"A017\",\"role\":\"agent\",\"role\":\"supervisor\","
                                    "\"exp\":1700000100}"),
                     AUTH_MALFORMED);
}

static void payload_libjwt_cannot_read_is_malformed(void **state)
{
    /* Valid for cJSON, but jansson (libjwt) refuses an escaped NUL and bytes that are not UTF-8:
     * our checks pass, libjwt's second opinion does not. */
    assert_int_equal(verify_payload("{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100,"
                                    "\"note\":\"a\\u0000b\"}"),
                     AUTH_MALFORMED);
    assert_int_equal(verify_payload("{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100,"
                                    "\"note\":\"\xff\"}"),
                     AUTH_MALFORMED);
}

/* ------------------------------------------------------------------------------------------
 * Refusals: signature and algorithm
 * ------------------------------------------------------------------------------------------ */

static void token_signed_with_another_secret_has_a_bad_signature(void **state)
{
    const char *t = make_token(HS256, "{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}",
                               EVP_sha256(), "another-secret-0123456789-abcdefghijkl");
    assert_int_equal(verify(t), AUTH_BAD_SIGNATURE);
}

static void tampered_payload_has_a_bad_signature(void **state)
{
    char t[AUTH_MAX_TOKEN];
    snprintf(t, sizeof t, "%s",
             hs256_token("{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}"));
    const char *sig = strrchr(t, '.');
    /* The payload of another token (role supervisor) with this token's signature. */
    char forged[AUTH_MAX_TOKEN];
    const char *other =
        hs256_token("{\"sub\":\"A017\",\"role\":\"supervisor\",\"exp\":1700000100}");
    snprintf(forged, sizeof forged, "%.*s%s", (int)(strrchr(other, '.') - other), other, sig);
    assert_int_equal(verify(forged), AUTH_BAD_SIGNATURE);
    /* One character of the signature changed, and the signature cut short. */
    char *last = t + strlen(t) - 1;
    *last = *last == 'A' ? 'B' : 'A';
    assert_int_equal(verify(t), AUTH_BAD_SIGNATURE);
    t[strlen(t) - 4] = '\0';
    assert_int_equal(verify(t), AUTH_BAD_SIGNATURE);
}

static void alg_none_is_refused_with_or_without_signature(void **state)
{
    const char *payload = "{\"sub\":\"A017\",\"role\":\"supervisor\",\"exp\":1700000100}";
    assert_int_equal(verify(make_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, NULL, "")),
                     AUTH_BAD_ALG);
    assert_int_equal(verify(make_token("{\"alg\":\"none\"}", payload, EVP_sha256(), SECRET)),
                     AUTH_BAD_ALG);
    assert_int_equal(verify(make_token("{\"alg\":\"None\"}", payload, NULL, "")), AUTH_BAD_ALG);
    /* Even an HS256 header without a signature is no token. */
    assert_int_equal(verify(make_token(HS256, payload, NULL, "")), AUTH_BAD_SIGNATURE);
}

static void other_hmac_algorithms_with_the_same_secret_are_refused(void **state)
{
    const char *payload = "{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}";
    assert_int_equal(verify(make_token("{\"alg\":\"HS384\",\"typ\":\"JWT\"}", payload,
                                       EVP_sha384(), SECRET)),
                     AUTH_BAD_ALG);
    assert_int_equal(verify(make_token("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", payload,
                                       EVP_sha512(), SECRET)),
                     AUTH_BAD_ALG);
    /* An HS256 header over an HS512 signature is simply a bad signature. */
    assert_int_equal(verify(make_token(HS256, payload, EVP_sha512(), SECRET)),
                     AUTH_BAD_SIGNATURE);
}

static void rs256_header_is_refused(void **state)
{
    /* Signed with our secret as if it were an HMAC key (the classic RS/HS confusion), and with a
     * 256-byte signature like RSA's. */
    const char *payload = "{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}";
    assert_int_equal(verify(make_token("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", payload,
                                       EVP_sha256(), SECRET)),
                     AUTH_BAD_ALG);
    char t[AUTH_MAX_TOKEN];
    snprintf(t, sizeof t, "%s", make_token("{\"alg\":\"RS256\"}", payload, NULL, ""));
    unsigned char rsa_sig[256];
    memset(rsa_sig, 0x42, sizeof rsa_sig);
    append_b64url(t, rsa_sig, sizeof rsa_sig);
    assert_int_equal(verify(t), AUTH_BAD_ALG);
}

static void keys_without_a_secret_verify_nothing(void **state)
{
    const char *t = hs256_token("{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}");
    auth_claims_t c;
    auth_keys_t no_secret = {NULL, 0, 30};
    auth_keys_t empty = {(const unsigned char *)"", 0, 30};
    assert_int_equal(auth_verify(&no_secret, t, strlen(t), 0, NOW, &c), AUTH_BAD_SIGNATURE);
    assert_int_equal(auth_verify(&empty, t, strlen(t), 0, NOW, &c), AUTH_BAD_SIGNATURE);
    assert_int_equal(auth_verify(NULL, t, strlen(t), 0, NOW, &c), AUTH_BAD_SIGNATURE);
}

/* ------------------------------------------------------------------------------------------
 * Refusals: time
 * ------------------------------------------------------------------------------------------ */

static void expired_token_is_refused_after_the_skew(void **state)
{
    assert_int_equal(verify_payload(AGENT_PAYLOAD, NOW - 3600), AUTH_EXPIRED);
    assert_int_equal(verify_payload(AGENT_PAYLOAD, NOW - 31), AUTH_EXPIRED);
    assert_int_equal(verify_payload(AGENT_PAYLOAD, NOW - 30), AUTH_EXPIRED);
    /* Within the 30 s skew a just-expired token still passes. */
    assert_int_equal(verify_payload(AGENT_PAYLOAD, NOW - 29), AUTH_OK);
    assert_int_equal(verify_payload(AGENT_PAYLOAD, NOW), AUTH_OK);
}

static void without_skew_exp_is_the_first_invalid_second(void **state)
{
    auth_keys_t strict = keys;
    strict.skew_s = 0;
    char payload[128];
    auth_claims_t c;
    snprintf(payload, sizeof payload, AGENT_PAYLOAD, NOW);
    const char *t = hs256_token(payload);
    assert_int_equal(auth_verify(&strict, t, strlen(t), 0, NOW, &c), AUTH_EXPIRED);
    assert_int_equal(auth_verify(&strict, t, strlen(t), 0, NOW - 1, &c), AUTH_OK);
}

static void token_before_nbf_is_not_yet_valid(void **state)
{
    const char *fmt = "{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":%d,\"nbf\":%d}";
    assert_int_equal(verify_payload(fmt, NOW + 7200, NOW + 3600), AUTH_NOT_YET_VALID);
    assert_int_equal(verify_payload(fmt, NOW + 7200, NOW + 31), AUTH_NOT_YET_VALID);
    assert_int_equal(verify_payload(fmt, NOW + 7200, NOW + 30), AUTH_OK); /* within skew */
    assert_int_equal(verify_payload(fmt, NOW + 7200, NOW - 10), AUTH_OK);
}

static void fractional_dates_round_to_the_stricter_side(void **state)
{
    /* exp 1699999970.9 counts as ...970 (expired with skew 30); nbf ...030.1 as ...031. */
    assert_int_equal(verify_payload("{\"sub\":\"A\",\"role\":\"agent\",\"exp\":1699999970.9}"),
                     AUTH_EXPIRED);
    assert_int_equal(verify_payload("{\"sub\":\"A\",\"role\":\"agent\",\"exp\":1700000100,"
                                    "\"nbf\":1700000030.1}"),
                     AUTH_NOT_YET_VALID);
}

/* ------------------------------------------------------------------------------------------
 * Refusals: claims
 * ------------------------------------------------------------------------------------------ */

static void missing_or_bad_exp_is_bad_claims(void **state)
{
    assert_int_equal(verify_payload("{\"sub\":\"A017\",\"role\":\"agent\"}"), AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload("{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":\"1700000100\"}"),
                     AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload("{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":null}"),
                     AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload("{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":-5}"),
                     AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload("{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1e300}"),
                     AUTH_BAD_CLAIMS);
    /* Names are case-sensitive: "EXP" is not exp (cJSON_GetObjectItem would say it is). */
    assert_int_equal(verify_payload("{\"sub\":\"A017\",\"role\":\"agent\",\"EXP\":1700000100}"),
                     AUTH_BAD_CLAIMS);
    /* nbf and iat, when present, are numbers too. */
    assert_int_equal(verify_payload("{\"sub\":\"A\",\"role\":\"agent\",\"exp\":1700000100,"
                                    "\"nbf\":\"soon\"}"),
                     AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload("{\"sub\":\"A\",\"role\":\"agent\",\"exp\":1700000100,"
                                    "\"iat\":true}"),
                     AUTH_BAD_CLAIMS);
}

static void missing_or_bad_sub_is_bad_claims(void **state)
{
    const char *fmt = "{\"sub\":%s,\"role\":\"agent\",\"exp\":1700000100}";
    assert_int_equal(verify_payload("{\"role\":\"agent\",\"exp\":1700000100}"), AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload(fmt, "\"\""), AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload(fmt, "17"), AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload(fmt, "\"a b\""), AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload(fmt, "\"a/b\""), AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload(fmt, "\"a*\""), AUTH_BAD_CLAIMS); /* a Redis glob */
    assert_int_equal(verify_payload(fmt, "\"caf\\u00e9\""), AUTH_BAD_CLAIMS);
    char id[AUTH_MAX_ID + 4];
    memset(id + 1, 'x', AUTH_MAX_ID + 1);
    id[0] = '"';
    id[AUTH_MAX_ID + 2] = '"';
    id[AUTH_MAX_ID + 3] = '\0';
    assert_int_equal(verify_payload(fmt, id), AUTH_BAD_CLAIMS); /* 65 characters */
    id[AUTH_MAX_ID + 1] = '"';
    id[AUTH_MAX_ID + 2] = '\0';
    assert_int_equal(verify_payload(fmt, id), AUTH_OK); /* 64 characters */
    assert_int_equal(verify_payload(fmt, "\"Az09._:-\""), AUTH_OK);
}

static void missing_or_unknown_role_is_refused(void **state)
{
    assert_int_equal(verify_payload("{\"sub\":\"A017\",\"exp\":1700000100}"), AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload("{\"sub\":\"A017\",\"role\":1,\"exp\":1700000100}"),
                     AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload("{\"sub\":\"A017\",\"role\":\"admin\",\"exp\":1700000100}"),
                     AUTH_WRONG_ROLE);
    assert_int_equal(verify_payload("{\"sub\":\"A017\",\"role\":\"Agent\",\"exp\":1700000100}"),
                     AUTH_WRONG_ROLE);
}

static void role_the_endpoint_does_not_want_is_wrong_role(void **state)
{
    auth_claims_t c;
    const char *agent = "{\"sub\":\"A017\",\"role\":\"agent\",\"exp\":1700000100}";
    const char *supervisor = "{\"sub\":\"S002\",\"role\":\"supervisor\",\"exp\":1700000100}";
    assert_int_equal(verify_as(hs256_token(agent), AUTH_ROLE_SUPERVISOR, &c), AUTH_WRONG_ROLE);
    assert_int_equal(verify_as(hs256_token(supervisor), AUTH_ROLE_AGENT, &c), AUTH_WRONG_ROLE);
    assert_int_equal(verify_as(hs256_token(agent), 0, &c), AUTH_OK);
    assert_int_equal(c.role, AUTH_ROLE_AGENT);
    assert_int_equal(verify_as(hs256_token(supervisor), 0, &c), AUTH_OK);
    assert_int_equal(c.role, AUTH_ROLE_SUPERVISOR);
}

static void bad_queues_are_bad_claims(void **state)
{
    const char *fmt = "{\"sub\":\"S002\",\"role\":\"supervisor\",\"exp\":1700000100,\"queues\":%s}";
    assert_int_equal(verify_payload(fmt, "\"billing\""), AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload(fmt, "{\"q\":1}"), AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload(fmt, "[]"), AUTH_BAD_CLAIMS); /* not "all queues" */
    assert_int_equal(verify_payload(fmt, "[\"billing\",7]"), AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload(fmt, "[\"billing\",\"a b\"]"), AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload(fmt, "[\"\"]"), AUTH_BAD_CLAIMS);
    assert_int_equal(verify_payload(fmt, "[[\"billing\"]]"), AUTH_BAD_CLAIMS);
}

static void thirty_two_queues_pass_and_thirty_three_do_not(void **state)
{
    char list[1024] = "[";
    for (int i = 0; i < AUTH_MAX_QUEUES; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"q%d\"", i ? "," : "", i);
    char list33[1100];
    snprintf(list33, sizeof list33, "%s,\"q32\"]", list);
    strcat(list, "]");
    const char *fmt = "{\"sub\":\"S002\",\"role\":\"supervisor\",\"exp\":1700000100,\"queues\":%s}";
    assert_int_equal(verify_payload(fmt, list), AUTH_OK);
    assert_int_equal(verify_payload(fmt, list33), AUTH_BAD_CLAIMS);
}

/* ------------------------------------------------------------------------------------------
 * Names, mint's arguments
 * ------------------------------------------------------------------------------------------ */

static void result_names_are_stable_and_distinct(void **state)
{
    assert_string_equal(auth_result_name(AUTH_OK), "ok");
    assert_string_equal(auth_result_name(AUTH_MISSING), "missing");
    assert_string_equal(auth_result_name(AUTH_TOO_LONG), "too_long");
    assert_string_equal(auth_result_name(AUTH_MALFORMED), "malformed");
    assert_string_equal(auth_result_name(AUTH_BAD_SIGNATURE), "bad_signature");
    assert_string_equal(auth_result_name(AUTH_BAD_ALG), "bad_alg");
    assert_string_equal(auth_result_name(AUTH_EXPIRED), "expired");
    assert_string_equal(auth_result_name(AUTH_NOT_YET_VALID), "not_yet_valid");
    assert_string_equal(auth_result_name(AUTH_BAD_CLAIMS), "bad_claims");
    assert_string_equal(auth_result_name(AUTH_WRONG_ROLE), "wrong_role");
    assert_string_equal(auth_result_name((auth_result_t)99), "unknown");
    assert_string_equal(auth_result_name((auth_result_t)-1), "unknown");
}

/* auth_mint at NOW into a buffer that is large enough; returns its result. */
static int mint(const auth_keys_t *k, const char *sub, auth_role_t role, const char *const *queues,
                size_t n_queues, int64_t ttl_s)
{
    char out[AUTH_MAX_TOKEN + 1];
    return auth_mint(k, sub, role, queues, n_queues, NOW, ttl_s, out, sizeof out);
}

static void mint_refuses_bad_arguments(void **state)
{
    const char *bad_queue[] = {"ok", "not ok"};
    const char *many[AUTH_MAX_QUEUES + 1];
    for (size_t i = 0; i <= AUTH_MAX_QUEUES; i++)
        many[i] = "q";
    auth_keys_t no_secret = {NULL, 0, 30};
    assert_int_equal(mint(&no_secret, "A1", AUTH_ROLE_AGENT, NULL, 0, 60), -1);
    assert_int_equal(mint(NULL, "A1", AUTH_ROLE_AGENT, NULL, 0, 60), -1);
    assert_int_equal(mint(&keys, NULL, AUTH_ROLE_AGENT, NULL, 0, 60), -1);
    assert_int_equal(mint(&keys, "a b", AUTH_ROLE_AGENT, NULL, 0, 60), -1);
    assert_int_equal(mint(&keys, "A1", 0, NULL, 0, 60), -1);
    assert_int_equal(mint(&keys, "A1", 3, NULL, 0, 60), -1);
    assert_int_equal(mint(&keys, "A1", AUTH_ROLE_AGENT, NULL, 0, 0), -1);
    assert_int_equal(mint(&keys, "A1", AUTH_ROLE_AGENT, NULL, 0, AUTH_MAX_TTL_S + 1), -1);
    assert_int_equal(mint(&keys, "S1", AUTH_ROLE_SUPERVISOR, bad_queue, 2, 60), -1);
    assert_int_equal(mint(&keys, "S1", AUTH_ROLE_SUPERVISOR, NULL, 2, 60), -1);
    assert_int_equal(mint(&keys, "S1", AUTH_ROLE_SUPERVISOR, many, AUTH_MAX_QUEUES + 1, 60), -1);
    assert_true(mint(&keys, "S1", AUTH_ROLE_SUPERVISOR, many, AUTH_MAX_QUEUES, 60) > 0);
    assert_true(mint(&keys, "A1", AUTH_ROLE_AGENT, NULL, 0, AUTH_MAX_TTL_S) > 0);
}

static void mint_needs_room_for_the_whole_token(void **state)
{
    char out[AUTH_MAX_TOKEN + 1];
    int len = auth_mint(&keys, "A1", AUTH_ROLE_AGENT, NULL, 0, NOW, 60, out, sizeof out);
    assert_true(len > 0);
    char small[AUTH_MAX_TOKEN + 1];
    assert_int_equal(auth_mint(&keys, "A1", AUTH_ROLE_AGENT, NULL, 0, NOW, 60, small,
                               (size_t)len),
                     -1);
    assert_int_equal(auth_mint(&keys, "A1", AUTH_ROLE_AGENT, NULL, 0, NOW, 60, small,
                               (size_t)len + 1),
                     len);
    assert_string_equal(small, out);
}

/* ------------------------------------------------------------------------------------------
 * Lifetimes and Authorization headers
 * ------------------------------------------------------------------------------------------ */

static void ttl_parses_units(void **state)
{
    assert_int_equal(auth_parse_ttl("8h"), 8 * 3600);
    assert_int_equal(auth_parse_ttl("30m"), 1800);
    assert_int_equal(auth_parse_ttl("90s"), 90);
    assert_int_equal(auth_parse_ttl("2d"), 2 * 86400);
    assert_int_equal(auth_parse_ttl("3600"), 3600);
    assert_int_equal(auth_parse_ttl("30d"), AUTH_MAX_TTL_S);
    assert_int_equal(auth_parse_ttl("720h"), AUTH_MAX_TTL_S);
    assert_int_equal(auth_parse_ttl("2592000"), AUTH_MAX_TTL_S);
}

static void ttl_refuses_bad_zero_and_too_long(void **state)
{
    const char *bad[] = {NULL,   "",     "h",   "0",    "0s",    "-5",  "+5",   "5x",
                         "5 h",  " 5h",  "5h ", "5hh",  "5H",    "1.5h", "31d", "721h",
                         "2592001", "99999999999999999999999", "0x10", "5m5s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (auth_parse_ttl(bad[i]) != -1)
            fail_msg("auth_parse_ttl(\"%s\") accepted", bad[i] ? bad[i] : "NULL");
    }
}

static void bearer_finds_the_token(void **state)
{
    size_t len = 99;
    const char *t = auth_bearer("Bearer abc.def.ghi", &len);
    assert_non_null(t);
    assert_int_equal(len, 11);
    assert_memory_equal(t, "abc.def.ghi", 11);
    t = auth_bearer("  bearer \t abc.def  \t", &len); /* any case, white space around */
    assert_non_null(t);
    assert_int_equal(len, 7);
    assert_memory_equal(t, "abc.def", 7);
    t = auth_bearer("BEARER x", &len);
    assert_non_null(t);
    assert_int_equal(len, 1);
    /* The scheme with no token: found, but empty, so auth_verify says missing. */
    t = auth_bearer("Bearer   ", &len);
    assert_non_null(t);
    assert_int_equal(len, 0);
    auth_claims_t c;
    assert_int_equal(auth_verify(&keys, t, len, 0, NOW, &c), AUTH_MISSING);
    assert_non_null(auth_bearer("Bearer", &len));
    assert_int_equal(len, 0);
}

static void bearer_refuses_other_schemes(void **state)
{
    const char *bad[] = {"Basic dXNlcjpwYXNz", "Bearerabc", "Bear abc", "", "   ", "Token abc",
                         "abc.def.ghi"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = 99;
        if (auth_bearer(bad[i], &len) != NULL)
            fail_msg("auth_bearer(\"%s\") found a token", bad[i]);
        assert_int_equal(len, 0);
    }
    size_t len = 99;
    assert_null(auth_bearer(NULL, &len));
    assert_int_equal(len, 0);
}

/* ------------------------------------------------------------------------------------------
 * The token subcommand and the secret check
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    int rc;
    char out[AUTH_MAX_TOKEN + 512];
    char err[1024];
} command_run_t;

/* Reads what fd wrote into file f into buf. */
static void slurp(FILE *f, char *buf, size_t cap)
{
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs auth_token_command with argv (NULL-terminated) and captures stdout and stderr. */
static void run_command(command_run_t *run, const auth_keys_t *k, char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    FILE *out = tmpfile(), *err = tmpfile();
    assert_non_null(out);
    assert_non_null(err);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO);
    dup2(fileno(out), STDOUT_FILENO);
    dup2(fileno(err), STDERR_FILENO);
    run->rc = auth_token_command(argc, argv, k);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved_out);
    close(saved_err);
    slurp(out, run->out, sizeof run->out);
    slurp(err, run->err, sizeof run->err);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void token_command_prints_a_token_that_verifies(void **state)
{
    command_run_t run;
    char *argv[] = {"token", "--sub", "A017", "--role", "agent", "--ttl", "8h", NULL};
    run_command(&run, &keys, argv);
    assert_int_equal(run.rc, 0);
    assert_string_equal(run.err, "");
    size_t len = strlen(run.out);
    assert_true(len > 1 && run.out[len - 1] == '\n');
    auth_claims_t c;
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(auth_verify(&keys, run.out, len - 1, AUTH_ROLE_AGENT, now, &c), AUTH_OK);
    assert_string_equal(c.sub, "A017");
    assert_true(c.exp - c.iat == 8 * 3600);
    assert_true(c.iat >= now - 5 && c.iat <= now);
}

static void token_command_gives_a_supervisor_queues(void **state)
{
    command_run_t run;
    char *argv[] = {"token", "--role", "supervisor", "--sub", "S002", "--queues", "billing,vip",
                    NULL};
    run_command(&run, &keys, argv);
    assert_int_equal(run.rc, 0);
    auth_claims_t c;
    assert_int_equal(auth_verify(&keys, run.out, strlen(run.out) - 1, AUTH_ROLE_SUPERVISOR,
                                 (int64_t)time(NULL), &c),
                     AUTH_OK);
    assert_int_equal(c.exp - c.iat, 8 * 3600); /* the default ttl */
    assert_int_equal(c.n_queues, 2);
    assert_string_equal(c.queues[0], "billing");
    assert_string_equal(c.queues[1], "vip");
}

static void token_command_refuses_bad_arguments_with_one_line(void **state)
{
    struct {
        char *argv[10];
        const char *named; /* what the error line must mention */
    } cases[] = {
        {{"token", "--role", "agent", NULL}, "--sub"},
        {{"token", "--sub", "A017", NULL}, "--role"},
        {{"token", "--sub", "a b", "--role", "agent", NULL}, "--sub"},
        {{"token", "--sub", "A017", "--role", "admin", NULL}, "--role"},
        {{"token", "--sub", "A017", "--role", "agent", "--ttl", "0", NULL}, "--ttl"},
        {{"token", "--sub", "A017", "--role", "agent", "--ttl", "31d", NULL}, "--ttl"},
        {{"token", "--sub", "A017", "--role", "agent", "--ttl", NULL}, "--ttl"},
        {{"token", "--sub", "A017", "--role", "agent", "--queues", "q1", NULL}, "--queues"},
        {{"token", "--sub", "S1", "--role", "supervisor", "--queues", "q1,,q2", NULL}, "--queues"},
        {{"token", "--sub", "S1", "--role", "supervisor", "--queues", "q1,", NULL}, "--queues"},
        {{"token", "--sub", "S1", "--role", "supervisor", "--queues", "a b", NULL}, "--queues"},
        {{"token", "--sub", "A017", "--role", "agent", "--frobnicate", NULL}, "--frobnicate"},
        {{"token", "extra", NULL}, "extra"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        command_run_t run;
        run_command(&run, &keys, cases[i].argv);
        if (run.rc != 2 || run.out[0] != '\0' || count_lines(run.err) != 1 ||
            !strstr(run.err, cases[i].named))
            fail_msg("case %zu: rc %d, stdout '%s', stderr '%s'", i, run.rc, run.out, run.err);
    }
}

static void token_command_refuses_too_many_queues(void **state)
{
    char list[512] = "q0";
    for (int i = 1; i <= AUTH_MAX_QUEUES; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), ",q%d", i);
    char *argv[] = {"token", "--sub", "S1", "--role", "supervisor", "--queues", list, NULL};
    command_run_t run;
    run_command(&run, &keys, argv);
    assert_int_equal(run.rc, 2);
    assert_non_null(strstr(run.err, "--queues"));
}

static void token_command_refuses_a_short_secret(void **state)
{
    char *argv[] = {"token", "--sub", "A017", "--role", "agent", NULL};
    auth_keys_t weak = {(const unsigned char *)"short", 5, 30};
    command_run_t run;
    run_command(&run, &weak, argv);
    assert_int_equal(run.rc, 2);
    assert_string_equal(run.out, "");
    assert_non_null(strstr(run.err, "secret"));
    assert_int_equal(count_lines(run.err), 1);
    run_command(&run, NULL, argv);
    assert_int_equal(run.rc, 2);
    assert_non_null(strstr(run.err, "not set"));
}

static void token_command_help_prints_usage(void **state)
{
    char *argv[] = {"token", "--help", NULL};
    command_run_t run;
    run_command(&run, &keys, argv);
    assert_int_equal(run.rc, 0);
    assert_non_null(strstr(run.out, "--sub"));
    assert_non_null(strstr(run.out, "--queues"));
    assert_string_equal(run.err, "");
}

static void secret_must_have_32_bytes(void **state)
{
    char err[200];
    assert_int_equal(auth_check_secret("0123456789abcdef0123456789abcdef", err, sizeof err), 0);
    assert_int_equal(auth_check_secret(SECRET, err, sizeof err), 0);
    err[0] = '\0';
    assert_int_equal(auth_check_secret("0123456789abcdef0123456789abcde", err, sizeof err), -1);
    assert_non_null(strstr(err, "31 bytes"));
    assert_null(strchr(err, '\n'));
    assert_int_equal(auth_check_secret("", err, sizeof err), -1);
    assert_non_null(strstr(err, "not set"));
    assert_int_equal(auth_check_secret(NULL, err, sizeof err), -1);
    assert_int_equal(auth_check_secret("short", NULL, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(minted_agent_token_verifies),
        cmocka_unit_test(minted_supervisor_token_keeps_its_queues),
        cmocka_unit_test(minted_token_is_refused_by_another_secret),
        cmocka_unit_test(hand_built_token_is_accepted),
        cmocka_unit_test(token_need_not_be_nul_terminated),
        cmocka_unit_test(claims_are_zeroed_on_refusal),
        cmocka_unit_test(missing_or_empty_token_is_missing),
        cmocka_unit_test(token_over_the_cap_is_too_long_even_when_valid),
        cmocka_unit_test(token_without_three_parts_is_malformed),
        cmocka_unit_test(token_with_bad_base64_is_malformed),
        cmocka_unit_test(base64_with_a_second_spelling_is_malformed),
        cmocka_unit_test(nul_inside_decoded_json_is_malformed),
        cmocka_unit_test(header_or_payload_that_is_not_a_json_object_is_malformed),
        cmocka_unit_test(header_without_alg_or_with_other_typ_is_malformed),
        cmocka_unit_test(repeated_member_names_are_malformed),
        cmocka_unit_test(payload_libjwt_cannot_read_is_malformed),
        cmocka_unit_test(token_signed_with_another_secret_has_a_bad_signature),
        cmocka_unit_test(tampered_payload_has_a_bad_signature),
        cmocka_unit_test(alg_none_is_refused_with_or_without_signature),
        cmocka_unit_test(other_hmac_algorithms_with_the_same_secret_are_refused),
        cmocka_unit_test(rs256_header_is_refused),
        cmocka_unit_test(keys_without_a_secret_verify_nothing),
        cmocka_unit_test(expired_token_is_refused_after_the_skew),
        cmocka_unit_test(without_skew_exp_is_the_first_invalid_second),
        cmocka_unit_test(token_before_nbf_is_not_yet_valid),
        cmocka_unit_test(fractional_dates_round_to_the_stricter_side),
        cmocka_unit_test(missing_or_bad_exp_is_bad_claims),
        cmocka_unit_test(missing_or_bad_sub_is_bad_claims),
        cmocka_unit_test(missing_or_unknown_role_is_refused),
        cmocka_unit_test(role_the_endpoint_does_not_want_is_wrong_role),
        cmocka_unit_test(bad_queues_are_bad_claims),
        cmocka_unit_test(thirty_two_queues_pass_and_thirty_three_do_not),
        cmocka_unit_test(result_names_are_stable_and_distinct),
        cmocka_unit_test(mint_refuses_bad_arguments),
        cmocka_unit_test(mint_needs_room_for_the_whole_token),
        cmocka_unit_test(ttl_parses_units),
        cmocka_unit_test(ttl_refuses_bad_zero_and_too_long),
        cmocka_unit_test(bearer_finds_the_token),
        cmocka_unit_test(bearer_refuses_other_schemes),
        cmocka_unit_test(token_command_prints_a_token_that_verifies),
        cmocka_unit_test(token_command_gives_a_supervisor_queues),
        cmocka_unit_test(token_command_refuses_bad_arguments_with_one_line),
        cmocka_unit_test(token_command_refuses_too_many_queues),
        cmocka_unit_test(token_command_refuses_a_short_secret),
        cmocka_unit_test(token_command_help_prints_usage),
        cmocka_unit_test(secret_must_have_32_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
