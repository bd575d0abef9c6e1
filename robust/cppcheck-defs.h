/* Definitions cppcheck needs because it does not read system headers: the
 * only macro whose arguments it cannot parse alone (hex digits without 0x,
 * pasted by the real macro).  Used by `make check-cppcheck` only. */
#define SD_ID128_MAKE(...) ((sd_id128_t){0})
