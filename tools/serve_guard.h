/* serve_guard.h -- the read deadlines of `mha serve`'s connections: a
 * connection whose request headers have not all arrived within a bound of
 * its start (or of its last answer, on a kept-alive connection), or whose
 * body then arrives slower than a least rate (after the same bound), is cut
 * off. libmicrohttpd's own timeout is one of inactivity, which a client
 * sending a header line or a body byte every few seconds ("slow loris",
 * slow POST) never trips: with one thread per connection, a few hundred
 * such clients held every connection for as long as they liked and new
 * requests waited. */
#ifndef MHA_SERVE_GUARD_H
#define MHA_SERVE_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

typedef struct serve_guard serve_guard;

/* Starts the guard's watch thread. header_ms > 0; min_body_rate in bytes a
 * second (0: bodies are not watched). Returns NULL when out of memory or
 * threads. */
serve_guard *serve_guard_start(double header_ms, double min_body_rate);
/* Stops the watch thread and frees the guard; call after MHD_stop_daemon
 * (every connection closed). NULL is fine. */
void serve_guard_stop(serve_guard *g);

/* MHD_OPTION_NOTIFY_CONNECTION's callback (cls = the guard): a connection
 * opened is watched from now, one closed is forgotten. */
void serve_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                        enum MHD_ConnectionNotificationCode code);
/* The request's headers are in (the access handler's first call): its body
 * is due from now. */
void serve_guard_headers_in(serve_guard *g, struct MHD_Connection *conn);
/* A piece of the body, bytes long, came in. */
void serve_guard_body(serve_guard *g, struct MHD_Connection *conn, size_t bytes);
/* The body is in (the handler's last call): the connection is not watched
 * until its answer is given. */
void serve_guard_body_in(serve_guard *g, struct MHD_Connection *conn);
/* The request is over (MHD_OPTION_NOTIFY_COMPLETED): the next request's
 * headers are due within the bound from now. */
void serve_guard_request_done(serve_guard *g, struct MHD_Connection *conn);

/* Connections cut off so far. */
uint64_t serve_guard_timeouts(serve_guard *g);

#endif
