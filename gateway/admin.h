/* The admin endpoint (admin_listen): GET /health for load balancers, GET /metrics for Prometheus. */
#ifndef SGW_GATEWAY_ADMIN_H
#define SGW_GATEWAY_ADMIN_H

struct event_base;
struct gw_server;

typedef struct gw_admin gw_admin_t;

/* Serves server's admin_listen on base (the main thread's loop); returns NULL
 * after logging when it cannot listen. */
gw_admin_t *gw_admin_new(struct event_base *base, struct gw_server *server);

/* Stops listening and frees; NULL is allowed. */
void gw_admin_free(gw_admin_t *admin);

#endif
