/*
 * drain.h - the last act of a server that closes first.
 *
 * Contract: drain_input() shuts down writing on fd 1, then reads and
 * discards what the peer already sent on fd 0, for at most
 * WHOCONN_DRAIN_MS and WHOCONN_DRAIN_MAX bytes, so that the close sends
 * FIN rather than RST and the last reply is not destroyed in flight.
 */
#ifndef WHOCONN_DRAIN_H
#define WHOCONN_DRAIN_H

void drain_input(void);

#endif /* WHOCONN_DRAIN_H */
