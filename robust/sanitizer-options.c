/*
 * sanitizer-options.c - default options of the ASan+UBSan build of whoconn
 * (`make whoconn-asan`), compiled in because launchers such as
 * systemd-socket-activate pass no ASAN_OPTIONS to the connection processes.
 *
 * Every report goes to a file under WHOCONN_SAN_LOG (one per process), and
 * `make check-asan` fails if any file is there after the suites ran: an
 * error in a process whose exit status no test looks at is still caught.
 * $ASAN_OPTIONS / $UBSAN_OPTIONS given at run time override these.
 */
#ifndef WHOCONN_SAN_LOG
#error "build with -DWHOCONN_SAN_LOG='\"/dir/report\"'"
#endif

const char *__asan_default_options(void);
const char *__ubsan_default_options(void);

const char *__asan_default_options(void) {
    return "log_path=" WHOCONN_SAN_LOG ":detect_leaks=1:abort_on_error=0"
           ":detect_stack_use_after_return=1:check_initialization_order=1"
           ":strict_string_checks=1";
}

const char *__ubsan_default_options(void) {
    return "log_path=" WHOCONN_SAN_LOG ":print_stacktrace=1:halt_on_error=1";
}
