/* utf8.c - see utf8.h. */
#include "utf8.h"

/* Valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF) without control
 * characters: what a browser will accept in a WebSocket text frame and a log line can hold. */
bool utf8_is_text(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            i++;
            continue;
        }
        /* The lead byte says how many continuation bytes follow and the smallest code point
         * that needs that many (anything smaller is an overlong form). */
        size_t more = (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 0;
        static const uint32_t min_for[4] = {0, 0x80, 0x800, 0x10000};
        if (more == 0)
            return false;
        uint32_t cp = c & (0x3f >> more), min = min_for[more];
        if (len - i <= more)
            return false;
        for (size_t k = 1; k <= more; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += more + 1;
    }
    return true;
}
