/* The one printf-style helper that writes a failure's message into a caller's buffer. */
#include "util/error.h"

#include <stdio.h>

int error_format_list(char *error, size_t error_size, const char *format, va_list arguments) {
    if (error == NULL || error_size == 0)
        return -1;
    vsnprintf(error, error_size, format, arguments);
    return -1;
}

int error_format(char *error, size_t error_size, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    error_format_list(error, error_size, format, arguments);
    va_end(arguments);
    return -1;
}
