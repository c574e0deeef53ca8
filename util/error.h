/* The one printf-style helper that writes a failure's message into a caller's buffer. */
#ifndef SGW_UTIL_ERROR_H
#define SGW_UTIL_ERROR_H

#include <stdarg.h>
#include <stddef.h>

/* Writes the formatted message into error (cut to error_size, always terminated; nothing when
 * error is NULL or error_size is 0); returns -1, so a failing function can end with
 * `return error_format(error, error_size, ...)`. */
int error_format(char *error, size_t error_size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* As error_format, with the arguments in a va_list. */
int error_format_list(char *error, size_t error_size, const char *format, va_list arguments)
    __attribute__((format(printf, 3, 0)));

#endif
