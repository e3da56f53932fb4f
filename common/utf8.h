/* utf8.h - text helpers the services share: the one check of text Integral shows to people,
 * UTF-8 encoding, hex digits. */
#ifndef INTEGRAL_UTF8_H
#define INTEGRAL_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF) without control
 * characters: what a browser accepts in a WebSocket text frame and a log line can hold. */
bool utf8_is_text(const unsigned char *s, size_t len);

/* Writes code point cp (at most U+10FFFF, not a surrogate) as 1-4 bytes of UTF-8 into out;
 * returns how many. */
size_t utf8_encode(uint32_t cp, char out[4]);

/* The value of hex digit c (0-9, a-f, A-F), or -1. */
int hex_digit_value(char c);

#endif
