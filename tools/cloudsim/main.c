/* kite-cloudsim: an offline emulator of cloud APIs (DigitalOcean v2, Hetzner Cloud, Vast.ai,
 * Verda, Compute Engine, the EC2 Query API, RunPod's REST API) whose machines are real local sshd
 * nodes, with faults injected on demand. See usage() and the README.
 *
 * The fronts are registered here, in one table: each request whose path is a front's API
 * (sim_front_t) goes through the fault layer to that front; every other one is a control
 * route, generic or a front's own, or 404.
 *
 * Control endpoint (no token; the server only listens on loopback):
 *   GET  /_sim/state                  counts (droplets now, peak, created, deleted, requests,
 *                                     faults injected) and every machine's id, name, status,
 *                                     address, tags, pid and cloud (the front's name)
 *   POST /_sim/faults                 JSON object; any of the fields of the --fault flags:
 *                                     p429, p500, reset, malformed, slow (probabilities),
 *                                     retry_after_s, slow_ms, delay_ms, provision_ms,
 *                                     no_capacity, droplet_limit, seed, and "next": a list of
 *                                     one-shot faults ("429", "500", "reset", "malformed",
 *                                     "slow") for the next API requests, in order
 *   POST /_sim/capacity               {"front", "region", "type" ("*" or a type), "market"
 *                                     ("*", "spot" or "on-demand"), "available": N} or a list
 *                                     of them: creates of that front in that region (of that
 *                                     type and market) beyond N live machines are refused in
 *                                     the front's no-capacity shape; N = -1 removes the rule
 *   GET  /_sim/capacity               the rules
 *   POST /_sim/machines/{id}/kill     any front's machine dies at once; {"vanish": false}
 *                                     (fronts whose ids are not the machine's answer the same at
 *                                     /_sim/verda/instances/{id}/kill, /_sim/runpod/pods/{id}/kill)
 *                                     leaves it listed as "off", else (default) it disappears
 *                                     as a reclaimed machine does
 *   GET  /_sim/bill                   every machine ever made, gone ones included: {"machines":
 *                                     [{id, cloud, size, region, spot, price_hourly, created_ms,
 *                                     gone_ms (0: exists), billable_s, cost}...], "total": USD},
 *                                     billed from creation until gone under the front's
 *                                     granularity (increments begun, a minimum)
 *   and each front's own routes (/_sim/droplets/{id}/kill, /_sim/hetzner/…, /_sim/vastai/…,
 *   /_sim/verda/…, /_sim/ec2/…, /_sim/runpod/…). */
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cloudsim.h"

/* Every front, in the order requests are matched against them. */
static const sim_front_t *const fronts[] = {&gcp_front,    &do_front,     &hetzner_front,
                                            &vastai_front, &verda_front,  &pricing_front,
                                            &ec2_front,    &runpod_front, NULL};

static void usage(FILE *fp) {
  fprintf(fp, "usage: kite-cloudsim [options]\n"
              "An emulator of DigitalOcean's v2 API (/v2/: droplets, account keys), of the\n"
              "Hetzner Cloud API (/v1/: servers, SSH keys), of Vast.ai's API (/api/v0/,\n"
              "/api/v1/: offers, instances on demand and by bid, SSH keys), of Verda's API\n"
              "(/verda/v1/: OAuth2 tokens, instance types, availability, SSH keys, startup\n"
              "scripts, instances on demand and spot), of the EC2 Query\n"
              "API (POST / with SigV4: instances, key pairs, security groups, per region)\n"
              "and of Compute Engine (/compute/v1/: instances, zone operations, machine\n"
              "types; /token; the billing catalog's SKUs under /v1/services/) on 127.0.0.1,\n"
              "whose machines are real local sshd nodes; also RunPod's REST API\n"
              "(/runpod/v1/: pods, on demand and interruptible). Every front is always on.\n\n"
              "  --port N             listen port (0: any; the line on stdout says which)\n"
              "  --port-file PATH     also write the port there\n"
              "  --token TOKEN        the bearer token of the DigitalOcean, Hetzner, Vast.ai and\n"
              "                       RunPod fronts, at least 4 characters (or\n"
              "                       $KITE_CLOUDSIM_TOKEN)\n"
              "  --ssh-port N         sshd port of every machine's node (default 2222)\n"
              "  --home DIR           kite home for the nodes (default $KITE_HOME or ~/.kite)\n"
              "  --fault-429 P        probability of a 429 with Retry-After per API request\n"
              "  --fault-500 P        probability of a 500 (request not processed)\n"
              "  --fault-reset P      probability of a connection reset after processing\n"
              "  --fault-malformed P  probability of a truncated JSON body after processing\n"
              "  --fault-slow P       probability of an answer delayed by --slow-ms\n"
              "  --retry-after S      Retry-After of injected 429s (default 1)\n"
              "  --slow-ms N          delay of slow answers (default 2000)\n"
              "  --delay-ms N         delay of every API answer\n"
              "  --provision-ms N     extra time before a machine becomes active\n"
              "  --no-capacity        every create fails: size not available in this region\n"
              "  --droplet-limit N    each front account's machine limit (default 25)\n"
              "  --seed N             seed of the fault choice\n"
              "  --verda-token-ttl S  lifetime of the Verda front's access tokens (default 3600)\n"
              "\n"
              "EC2: the account's keys are $KITE_CLOUDSIM_AWS_ACCESS_KEY_ID (default\n"
              "AKIAKITECLOUDSIM0001) and $KITE_CLOUDSIM_AWS_SECRET_ACCESS_KEY (default: the\n"
              "token); spot instances serve the metadata service on their address, port\n"
              "$KITE_CLOUDSIM_IMDS_PORT (default 8169). Point kite at it with\n"
              "KITE_AWS_ENDPOINT=http://127.0.0.1:PORT/ (or provider_options.endpoint).\n"
              "\n"
              "Compute Engine: /token takes the bearer token as a refresh token, or a\n"
              "service-account JWT (verified with the key in $KITE_CLOUDSIM_GCP_KEY_FILE\n"
              "when that is set); spot VMs serve a metadata server on their address, port\n"
              "$KITE_CLOUDSIM_GCE_METADATA_PORT (default 8170). Point kite at it with\n"
              "KITE_GCP_API_URL=http://127.0.0.1:PORT/compute/v1 and\n"
              "KITE_GCP_BILLING_URL=http://127.0.0.1:PORT/v1.\n"
              "\n"
              "Vast.ai: the base URL is http://127.0.0.1:PORT; an interruptible instance is\n"
              "outbid with POST /_sim/vastai/instances/{id}/outbid, an offer's launches fail\n"
              "with POST /_sim/vastai/offers/{id}/fail {\"status\": \"exited\"} (null: undo).\n"
              "\n"
              "Verda: the base URL is http://127.0.0.1:PORT/verda/v1; POST /verda/v1/oauth2/token\n"
              "takes the client id $KITE_CLOUDSIM_VERDA_CLIENT_ID (default kite-cloudsim-client)\n"
              "with the token as its secret. A spot instance is evicted with POST\n"
              "/_sim/verda/instances/{id}/discontinue; a type's launches fail with POST\n"
              "/_sim/verda/instance-types/{type}/fail {\"status\": \"error\"} (null: undo);\n"
              "POST /_sim/verda/token-ttl {\"seconds\": N} sets the tokens' lifetime.\n"
              "\n"
              "RunPod: RunPod's REST API at /runpod/v1/ (pods; the base URL is\n"
              "http://127.0.0.1:PORT/runpod/v1, the same --token as the API key); the pod's\n"
              "env carries PUBLIC_KEY, the key its node authorizes. An interruptible pod is\n"
              "interrupted with POST /_sim/runpod/pods/{id}/interrupt, a GPU type's launches\n"
              "fail with POST /_sim/runpod/gpu-types/{id}/fail {\"status\": \"EXITED\"} (null:\n"
              "undo; the id URL-encoded).\n");
}

double sim_rand01(sim_t *sim) {
  sim->rng ^= sim->rng >> 12;
  sim->rng ^= sim->rng << 25;
  sim->rng ^= sim->rng >> 27;
  return (double)((sim->rng * 2685821657736338717ull) >> 11) / (double)(1ull << 53);
}

char *sim_dump(json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return s;
}

char *sim_sprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *out = NULL;
  int n = vasprintf(&out, fmt, ap);
  va_end(ap);
  return n < 0 ? NULL : out;
}

/* ---- routing and control ----------------------------------------------------------------- */

const sim_front_t *sim_front_of(const sim_t *sim, const http_req_t *req) {
  for (size_t i = 0; sim->fronts[i]; i++) {
    const sim_front_t *f = sim->fronts[i];
    if (f->path_prefix) {
      size_t n = strlen(f->path_prefix);
      if (strncmp(req->path, f->path_prefix, n) == 0 ||
          (n > 1 && strlen(req->path) == n - 1 && strncmp(req->path, f->path_prefix, n - 1) == 0))
        return f;
    } else if (f->match && f->match(req)) {
      return f;
    }
  }
  return NULL;
}

static const char *state_name(machine_state_t s) {
  static const char *const names[] = {"new", "active", "off", "deleting"};
  return names[s];
}

static void get_state(sim_t *sim, http_resp_t *resp) {
  json_t *list = json_array();
  for (machine_t *m = sim->machines; m; m = m->next) {
    json_t *tags = json_array();
    for (size_t i = 0; i < m->tag_n; i++)
      json_array_append_new(tags, json_string(m->tags[i]));
    json_array_append_new(list,
                          json_pack("{s:I, s:s, s:s, s:s, s:o, s:i, s:s}", "id", (json_int_t)m->id,
                                    "name", m->name, "status", state_name(m->state), "address",
                                    m->address, "tags", tags, "pid",
                                    m->node ? kite_local_node_pid(m->node) : 0, "cloud", m->cloud));
  }
  json_t *j = json_pack("{s:i, s:i, s:i, s:i, s:i, s:o}", "peak", sim->peak, "created",
                        sim->created_total, "deleted", sim->deleted_total, "requests",
                        sim->requests, "faults_injected", sim->faults_injected, "machines", list);
  for (size_t i = 0; sim->fronts[i]; i++)
    if (sim->fronts[i]->state)
      sim->fronts[i]->state(sim, j);
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  http_json(resp, 200, s);
}

void sim_kill_machine(sim_t *sim, const http_req_t *req, uint64_t id, http_resp_t *resp) {
  machine_t *m = machine_find(sim, id);
  if (m == NULL) {
    http_error(resp, 404, "not_found", "no such machine");
    return;
  }
  json_error_t e;
  json_t *j = req->body_len ? json_loadb(req->body, req->body_len, 0, &e) : NULL;
  bool vanish = !(j && json_is_false(json_object_get(j, "vanish")));
  json_decref(j);
  fprintf(stderr, "kite-cloudsim: %s machine %llu (%s) dies%s\n", m->cloud, (unsigned long long)id,
          m->name, vanish ? " and disappears" : "");
  machine_kill(m, vanish);
  http_json(resp, 200, strdup("{\"ok\":true}"));
}

static void handle(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  const sim_front_t *f = sim_front_of(sim, req);
  if (f) {
    faults_serve(sim, f, req, resp);
    return;
  }
  for (size_t i = 0; sim->fronts[i]; i++)
    if (sim->fronts[i]->control && sim->fronts[i]->control(sim, req, resp))
      return;
  const char *p = req->path;
  if (strcmp(p, "/_sim/state") == 0 && strcmp(req->method, "GET") == 0) {
    get_state(sim, resp);
    return;
  }
  if (strcmp(p, "/_sim/bill") == 0 && strcmp(req->method, "GET") == 0) {
    http_json(resp, 200, machines_bill_json(sim));
    return;
  }
  if (strcmp(p, "/_sim/faults") == 0 && strcmp(req->method, "POST") == 0) {
    faults_set(sim, req, resp);
    return;
  }
  if (strcmp(p, "/_sim/capacity") == 0 && strcmp(req->method, "POST") == 0) {
    sim_capacity_set(sim, req, resp);
    return;
  }
  if (strcmp(p, "/_sim/capacity") == 0 && strcmp(req->method, "GET") == 0) {
    sim_capacity_get(sim, resp);
    return;
  }
  unsigned long long id;
  char tail[16];
  if (sscanf(p, "/_sim/machines/%llu/%15s", &id, tail) == 2 && strcmp(tail, "kill") == 0 &&
      strcmp(req->method, "POST") == 0) {
    sim_kill_machine(sim, req, id, resp);
    return;
  }
  http_error(resp, 404, "not_found", "The resource you were accessing could not be found.");
}

/* ---- main ---------------------------------------------------------------------------------- */

static void on_shutdown_done(kite_runtime_t *rt, void *data) {
  (void)rt;
  (void)data;
}

static void on_machines_stopped(sim_t *sim) {
  kite_runtime_shutdown(sim->rt, on_shutdown_done, NULL);
}

static uv_signal_t sigterm, sigint;

static void on_signal(uv_signal_t *s, int signum) {
  sim_t *sim = s->data;
  (void)signum;
  uv_close((uv_handle_t *)&sigterm, NULL);
  uv_close((uv_handle_t *)&sigint, NULL);
  if (sim->stopping)
    return;
  sim->stopping = true;
  fprintf(stderr, "kite-cloudsim: stopping; deleting %u machine(s)\n", machine_count(sim));
  httpd_stop(sim);
  machines_stop_all(sim, on_machines_stopped);
}

static double parse_p(const char *s, const char *flag) {
  char *end = NULL;
  double d = strtod(s, &end);
  if (end == s || *end || d < 0 || d > 1) {
    fprintf(stderr, "kite-cloudsim: %s wants a probability between 0 and 1, not \"%s\"\n", flag, s);
    exit(2);
  }
  return d;
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {{"port", required_argument, 0, 'p'},
                                           {"port-file", required_argument, 0, 'f'},
                                           {"token", required_argument, 0, 't'},
                                           {"ssh-port", required_argument, 0, 's'},
                                           {"home", required_argument, 0, 'H'},
                                           {"fault-429", required_argument, 0, 1},
                                           {"fault-500", required_argument, 0, 2},
                                           {"fault-reset", required_argument, 0, 3},
                                           {"fault-malformed", required_argument, 0, 4},
                                           {"fault-slow", required_argument, 0, 5},
                                           {"retry-after", required_argument, 0, 6},
                                           {"slow-ms", required_argument, 0, 7},
                                           {"delay-ms", required_argument, 0, 8},
                                           {"provision-ms", required_argument, 0, 9},
                                           {"no-capacity", no_argument, 0, 10},
                                           {"droplet-limit", required_argument, 0, 11},
                                           {"seed", required_argument, 0, 12},
                                           {"verda-token-ttl", required_argument, 0, 13},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  sim_t sim = {.ssh_port = 2222, .next_machine_id = 3164444, .next_key_id = 512189};
  int port = 0;
  const char *port_file = NULL, *home = NULL, *token = getenv("KITE_CLOUDSIM_TOKEN");
  uint64_t seed = 0;
  int c;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'p':
      port = atoi(optarg);
      break;
    case 'f':
      port_file = optarg;
      break;
    case 't':
      token = optarg;
      break;
    case 's':
      sim.ssh_port = (unsigned)atoi(optarg);
      break;
    case 'H':
      home = optarg;
      break;
    case 1:
      sim.faults.p429 = parse_p(optarg, "--fault-429");
      break;
    case 2:
      sim.faults.p500 = parse_p(optarg, "--fault-500");
      break;
    case 3:
      sim.faults.preset = parse_p(optarg, "--fault-reset");
      break;
    case 4:
      sim.faults.pmalformed = parse_p(optarg, "--fault-malformed");
      break;
    case 5:
      sim.faults.pslow = parse_p(optarg, "--fault-slow");
      break;
    case 6:
      sim.faults.retry_after_s = (unsigned)atoi(optarg);
      break;
    case 7:
      sim.faults.slow_ms = (unsigned)atoi(optarg);
      break;
    case 8:
      sim.faults.delay_ms = (unsigned)atoi(optarg);
      break;
    case 9:
      sim.faults.provision_ms = (unsigned)atoi(optarg);
      break;
    case 10:
      sim.faults.no_capacity = true;
      break;
    case 11:
      sim.faults.droplet_limit = (unsigned)atoi(optarg);
      break;
    case 12:
      seed = strtoull(optarg, NULL, 10);
      break;
    case 13:
      sim.verda_token_ttl_s = (unsigned)atoi(optarg);
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (token == NULL || strlen(token) < 4) {
    fprintf(stderr, "kite-cloudsim: give the API token clients must send with --token or "
                    "$KITE_CLOUDSIM_TOKEN (at least 4 characters)\n");
    return 2;
  }
  sim.token = strdup(token);
  sim.fronts = fronts;
  sim.rng = (seed ? seed : (uint64_t)uv_hrtime()) | 1;
  kite_runtime_options_t ro = {.home = home, .log_level = -1};
  int rc = kite_runtime_new(&sim.rt, &ro);
  if (rc != 0) {
    fprintf(stderr, "kite-cloudsim: cannot start: %s\n", kite_strerror(rc));
    return 1;
  }
  kite_secret_add(sim.rt, sim.token);
  sim.loop = kite_runtime_loop(sim.rt);
  sim.node_dir = sim_sprintf("%s/cloudsim", kite_runtime_home(sim.rt));
  if (httpd_start(&sim, "127.0.0.1", port, handle, &port) != 0)
    return 1;
  uv_signal_init(sim.loop, &sigterm);
  uv_signal_init(sim.loop, &sigint);
  sigterm.data = sigint.data = &sim;
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sigint, on_signal, SIGINT);
  signal(SIGPIPE, SIG_IGN);
  if (port_file) {
    FILE *fp = fopen(port_file, "w");
    if (fp) {
      fprintf(fp, "%d\n", port);
      fclose(fp);
    }
  }
  printf("kite-cloudsim: listening on http://127.0.0.1:%d\n", port);
  fflush(stdout);
  kite_runtime_run(sim.rt); /* until a signal stopped everything */
  rc = kite_runtime_free(sim.rt);
  for (size_t i = 0; fronts[i]; i++)
    if (fronts[i]->free)
      fronts[i]->free(&sim);
  machines_bill_free(&sim);
  free(sim.token);
  free(sim.node_dir);
  return rc == 0 ? 0 : 1;
}
