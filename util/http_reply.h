/* Replies of the small evhttp servers (the admin endpoints of both binaries). */
#ifndef SGW_UTIL_HTTP_REPLY_H
#define SGW_UTIL_HTTP_REPLY_H

struct evbuffer;
struct evhttp_request;

/* Sends status with body (what a GET gets) as content_type. To a HEAD request
 * it sends the head alone, with the Content-Length a GET would have (RFC 9110
 * §9.3.2): libevent 2.1 writes a reply's body after a HEAD's head too, and
 * the next response on that connection would not parse. */
void http_reply(struct evhttp_request *request, int status, const char *reason,
                const char *content_type, struct evbuffer *body);

#endif
