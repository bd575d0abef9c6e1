/*
 * metrics-names - fails when whoconn.c's end_info names a disconnect reason
 * differently from whoconn_end_names in whoconn.h, the reason label of
 * whoconn_disconnects_total: the log's end= and the metric must agree.
 */
#define WHOCONN_NO_MAIN
#include "whoconn.c"

int main(void) {
    int bad = 0;

    for (int i = 0; i < END__MAX; i++)
        if (!end_info[i].name || strcmp(end_info[i].name, whoconn_end_names[i]) != 0) {
            fprintf(stderr, "metrics-names: end %d is \"%s\" in whoconn.c, \"%s\" in whoconn.h\n",
                    i, end_info[i].name ? end_info[i].name : "(null)", whoconn_end_names[i]);
            bad = 1;
        }
    if (!bad)
        printf("metrics-names: %d disconnect reasons agree\n", END__MAX);
    return bad;
}
