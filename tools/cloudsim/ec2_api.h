#ifndef KITE_CLOUDSIM_EC2_H
#define KITE_CLOUDSIM_EC2_H

/* The EC2 front of kite-cloudsim (ec2_api.c) and the instance metadata service its spot
 * instances serve on their own loopback address (ec2_imds.c). */

#include "cloudsim.h"

/* Whether req is an EC2 Query API call (POST / with a form body): the fault layer treats it as
 * an API request. */
bool ec2_api_is_request(const http_req_t *req);
/* Handles EC2 calls and the /_sim/ec2/… control routes; false when req is neither. */
bool ec2_api_handle(sim_t *sim, const http_req_t *req, http_resp_t *resp);
void ec2_api_free(sim_t *sim);

/* ---- the metadata service (ec2_imds.c) ----------------------------------------------------- */

typedef struct imds imds_t;
/* What the metadata service of one instance answers from. */
typedef struct imds_info {
  const char *instance_id;
  const char *instance_action; /* the spot notice JSON, or NULL (then 404) */
} imds_info_t;
typedef const imds_info_t *(*imds_lookup_fn)(void *data);

/* Listens on address:port (IMDSv2 only: PUT /latest/api/token first). */
int imds_start(uv_loop_t *loop, const char *address, int port, imds_lookup_fn fn, void *data,
               imds_t **out);
/* Closes the listener and every connection; frees itself when they are closed. */
void imds_stop(imds_t *m);

#endif
