/* The fault layer: what goes wrong around every API call, in the shapes of the front that
 * serves the call (sim_front_t). It owns the fault settings (flags, POST /_sim/faults) and the
 * choice of one fault per call: a one-shot fault queued by the control endpoint first, else a
 * draw against the probabilities.
 *
 * A 429 or a 500 is answered at once in the front's error shape, and the call is not
 * processed. A reset, a malformed body or a slow answer happen after the front processed the
 * call, as a lost answer does on a real network. Every answer of a front that has a rate limit
 * carries ratelimit-* headers (remaining 0 in a 429). Creates ask sim_admit() for capacity and
 * the account's limit, which refuses in the front's shape too. Capacity is --no-capacity
 * (none anywhere) or rules per front, region and type (POST /_sim/capacity): a place with a
 * rule takes at most that many live machines, as a real region runs out of a type. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloudsim.h"

static fault_kind_t pick_fault(sim_t *sim) {
  faults_t *f = &sim->faults;
  if (f->queue_n) {
    fault_kind_t k = f->queue[0];
    memmove(f->queue, f->queue + 1, (f->queue_n - 1) * sizeof(f->queue[0]));
    f->queue_n--;
    return k;
  }
  double x = sim_rand01(sim);
  if ((x -= f->p429) < 0)
    return FAULT_429;
  if ((x -= f->p500) < 0)
    return FAULT_500;
  if ((x -= f->preset) < 0)
    return FAULT_RESET;
  if ((x -= f->pmalformed) < 0)
    return FAULT_MALFORMED;
  if ((x -= f->pslow) < 0)
    return FAULT_SLOW;
  return FAULT_NONE;
}

void faults_serve(sim_t *sim, const sim_front_t *f, const http_req_t *req, http_resp_t *resp) {
  sim->requests++;
  fault_kind_t fault = pick_fault(sim);
  if (fault != FAULT_NONE)
    sim->faults_injected++;
  unsigned ra = sim->faults.retry_after_s ? sim->faults.retry_after_s : 1;
  if (fault == FAULT_429)
    f->error(resp, 429, f->rate_limited.code, f->rate_limited.message);
  else if (fault == FAULT_500)
    f->error(resp, f->server_error.status ? f->server_error.status : 500, f->server_error.code,
             f->server_error.message);
  else
    f->handle(sim, req, resp);
  /* The front's own headers come after the rate-limit ones. */
  char *own = resp->headers;
  resp->headers = NULL;
  if (f->ratelimit_limit) {
    long long reset_at = (long long)time(NULL) + (fault == FAULT_429 ? ra : 60);
    http_add_header(resp, "ratelimit-limit: %u", f->ratelimit_limit);
    http_add_header(resp, "ratelimit-remaining: %u",
                    fault == FAULT_429 ? 0 : f->ratelimit_limit - 1);
    http_add_header(resp, "ratelimit-reset: %lld", reset_at);
  }
  if (fault == FAULT_429)
    http_add_header(resp, "retry-after: %u", ra);
  if (own) {
    char *all = sim_sprintf("%s%s", resp->headers ? resp->headers : "", own);
    free(own);
    free(resp->headers);
    resp->headers = all;
  }
  if (resp->content_type == NULL)
    resp->content_type = f->content_type;
  if (fault == FAULT_MALFORMED && resp->body_len > 2) {
    resp->body_len /= 2; /* a truncated body */
  } else if (fault == FAULT_MALFORMED) {
    http_json(resp, resp->status == 204 ? 200 : resp->status,
              strdup(f->malformed_body ? f->malformed_body : "{\"error\": [}"));
  }
  resp->reset = fault == FAULT_RESET;
  resp->delay_ms = sim->faults.delay_ms;
  if (fault == FAULT_SLOW)
    resp->delay_ms += sim->faults.slow_ms ? sim->faults.slow_ms : 2000;
}

unsigned sim_machine_limit(const sim_t *sim) {
  return sim->faults.droplet_limit ? sim->faults.droplet_limit : 25;
}

/* Live machines of front f in region (of type, unless type is "*"; of the market, unless it is
 * SIM_ANY_MARKET): deleting ones no longer hold capacity. */
static unsigned live_in(const sim_t *sim, const sim_front_t *f, const char *region,
                        const char *type, int market) {
  unsigned n = 0;
  for (const machine_t *m = sim->machines; m; m = m->next)
    if (strcmp(m->cloud, f->name) == 0 && m->state != M_DELETING && m->region &&
        strcmp(m->region, region) == 0 &&
        (strcmp(type, "*") == 0 || (m->size && strcmp(m->size, type) == 0)) &&
        (market == SIM_ANY_MARKET || (int)m->spot == market))
      n++;
  return n;
}

/* Whether a capacity rule of f's in region leaves no room for want more of size. */
static bool over_capacity(const sim_t *sim, const sim_front_t *f, unsigned want, const char *size,
                          const char *region, bool spot) {
  const faults_t *fs = &sim->faults;
  for (size_t i = 0; region && i < fs->capacity_n; i++) {
    const struct sim_capacity *c = &fs->capacity[i];
    if (strcmp(c->front, f->name) != 0 || strcmp(c->region, region) != 0 ||
        (strcmp(c->type, "*") != 0 && (size == NULL || strcmp(c->type, size) != 0)) ||
        (c->market != SIM_ANY_MARKET && c->market != (int)spot))
      continue;
    if (live_in(sim, f, region, c->type, c->market) + want > c->available)
      return true;
  }
  return false;
}

bool sim_admit(sim_t *sim, const sim_front_t *f, unsigned live, unsigned want, const char *size,
               const char *region, bool spot, http_resp_t *resp) {
  if (sim->faults.no_capacity || over_capacity(sim, f, want, size, region, spot)) {
    f->no_capacity(resp, size ? size : "", region ? region : "");
    return false;
  }
  unsigned limit = sim_machine_limit(sim);
  if (live + want > limit) {
    f->over_limit(resp, limit, live + want);
    return false;
  }
  return true;
}

/* ---- capacity rules ------------------------------------------------------------------------ */

static bool front_known(const sim_t *sim, const char *name) {
  for (size_t i = 0; sim->fronts[i]; i++)
    if (strcmp(sim->fronts[i]->name, name) == 0)
      return true;
  return false;
}

/* Applies one rule; NULL, or what was wrong with it. */
static const char *capacity_rule(sim_t *sim, json_t *r) {
  faults_t *fs = &sim->faults;
  const char *front = json_string_value(json_object_get(r, "front"));
  const char *region = json_string_value(json_object_get(r, "region"));
  json_t *t = json_object_get(r, "type"), *av = json_object_get(r, "available");
  const char *type = t ? json_string_value(t) : "*";
  json_t *mk = json_object_get(r, "market");
  const char *market = mk ? json_string_value(mk) : "*";
  int mval = market == NULL                     ? -2
             : strcmp(market, "*") == 0         ? SIM_ANY_MARKET
             : strcmp(market, "spot") == 0      ? 1
             : strcmp(market, "on-demand") == 0 ? 0
                                                : -2;
  if (mval == -2)
    return "\"market\" must be \"*\", \"spot\" or \"on-demand\"";
  if (front == NULL || !front_known(sim, front))
    return "\"front\" must name a front (digitalocean, hetzner, vastai, verda, ec2, gcp)";
  if (region == NULL || *region == '\0' || strlen(region) >= sizeof(fs->capacity[0].region))
    return "\"region\" must be a region's name";
  if (type == NULL || *type == '\0' || strlen(type) >= sizeof(fs->capacity[0].type))
    return "\"type\" must be \"*\" or a type's name";
  if (!json_is_integer(av) || json_integer_value(av) < -1 || json_integer_value(av) > 1000000)
    return "\"available\" must be an integer from -1 (no rule) to 1000000";
  size_t i = 0;
  while (i < fs->capacity_n &&
         (strcmp(fs->capacity[i].front, front) != 0 ||
          strcmp(fs->capacity[i].region, region) != 0 || strcmp(fs->capacity[i].type, type) != 0 ||
          fs->capacity[i].market != mval))
    i++;
  if (json_integer_value(av) < 0) {
    if (i < fs->capacity_n)
      fs->capacity[i] = fs->capacity[--fs->capacity_n];
    return NULL;
  }
  if (i == fs->capacity_n) {
    if (fs->capacity_n == sizeof(fs->capacity) / sizeof(fs->capacity[0]))
      return "too many capacity rules (64)";
    fs->capacity_n++;
  }
  struct sim_capacity *c = &fs->capacity[i];
  snprintf(c->front, sizeof(c->front), "%s", front);
  snprintf(c->region, sizeof(c->region), "%s", region);
  snprintf(c->type, sizeof(c->type), "%s", type);
  c->market = mval;
  c->available = (unsigned)json_integer_value(av);
  return NULL;
}

void sim_capacity_set(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  json_error_t e;
  json_t *j = json_loadb(req->body, req->body_len, 0, &e);
  const char *err = json_is_object(j) || json_is_array(j) ? NULL
                                                          : "a capacity rule (a JSON object) or a "
                                                            "list of them";
  if (json_is_object(j))
    err = capacity_rule(sim, j);
  for (size_t i = 0; err == NULL && json_is_array(j) && i < json_array_size(j); i++)
    err = json_is_object(json_array_get(j, i)) ? capacity_rule(sim, json_array_get(j, i))
                                               : "each capacity rule is a JSON object";
  json_decref(j);
  if (err)
    http_error(resp, 400, "bad_request", err);
  else
    sim_capacity_get(sim, resp);
}

void sim_capacity_get(sim_t *sim, http_resp_t *resp) {
  json_t *rules = json_array();
  for (size_t i = 0; i < sim->faults.capacity_n; i++) {
    const struct sim_capacity *c = &sim->faults.capacity[i];
    json_array_append_new(rules, json_pack("{s:s, s:s, s:s, s:s, s:i}", "front", c->front, "region",
                                           c->region, "type", c->type, "market",
                                           c->market == SIM_ANY_MARKET ? "*"
                                           : c->market                 ? "spot"
                                                                       : "on-demand",
                                           "available", (int)c->available));
  }
  http_json(resp, 200, json_dumps(rules, JSON_COMPACT));
  json_decref(rules);
}

/* ---- settings ------------------------------------------------------------------------------ */

static fault_kind_t fault_by_name(const char *s) {
  if (s == NULL)
    return FAULT_NONE;
  if (strcmp(s, "429") == 0)
    return FAULT_429;
  if (strcmp(s, "500") == 0)
    return FAULT_500;
  if (strcmp(s, "reset") == 0)
    return FAULT_RESET;
  if (strcmp(s, "malformed") == 0)
    return FAULT_MALFORMED;
  if (strcmp(s, "slow") == 0)
    return FAULT_SLOW;
  return FAULT_NONE;
}

void faults_set(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  json_error_t e;
  json_t *j = json_loadb(req->body, req->body_len, 0, &e);
  if (!json_is_object(j)) {
    json_decref(j);
    http_error(resp, 400, "bad_request", "a JSON object of fault settings");
    return;
  }
  faults_t *f = &sim->faults;
  const char *k;
  json_t *v;
  json_object_foreach(j, k, v) {
    double d = json_number_value(v);
    if (strcmp(k, "p429") == 0)
      f->p429 = d;
    else if (strcmp(k, "p500") == 0)
      f->p500 = d;
    else if (strcmp(k, "reset") == 0)
      f->preset = d;
    else if (strcmp(k, "malformed") == 0)
      f->pmalformed = d;
    else if (strcmp(k, "slow") == 0)
      f->pslow = d;
    else if (strcmp(k, "retry_after_s") == 0)
      f->retry_after_s = (unsigned)d;
    else if (strcmp(k, "slow_ms") == 0)
      f->slow_ms = (unsigned)d;
    else if (strcmp(k, "delay_ms") == 0)
      f->delay_ms = (unsigned)d;
    else if (strcmp(k, "provision_ms") == 0)
      f->provision_ms = (unsigned)d;
    else if (strcmp(k, "no_capacity") == 0)
      f->no_capacity = json_is_true(v);
    else if (strcmp(k, "droplet_limit") == 0)
      f->droplet_limit = (unsigned)d;
    else if (strcmp(k, "seed") == 0)
      sim->rng = (uint64_t)d | 1;
    else if (strcmp(k, "next") == 0 && json_is_array(v)) {
      size_t i;
      json_t *x;
      json_array_foreach(v, i, x) {
        fault_kind_t fk = fault_by_name(json_string_value(x));
        if (fk != FAULT_NONE && f->queue_n < sizeof(f->queue) / sizeof(f->queue[0]))
          f->queue[f->queue_n++] = fk;
      }
    } else {
      char msg[160];
      snprintf(msg, sizeof(msg), "unknown fault setting \"%s\"", k);
      http_error(resp, 400, "bad_request", msg);
      json_decref(j);
      return;
    }
  }
  json_decref(j);
  http_json(resp, 200, strdup("{\"ok\":true}"));
}
