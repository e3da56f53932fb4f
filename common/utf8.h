/* utf8.h - the one check of text Integral shows to people. */
#ifndef INTEGRAL_UTF8_H
#define INTEGRAL_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF) without control
 * characters: what a browser accepts in a WebSocket text frame and a log line can hold. */
bool utf8_is_text(const unsigned char *s, size_t len);

#endif
