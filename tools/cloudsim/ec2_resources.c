/* The EC2 front's account: instances on top of machines (machines.c), key pairs and security
 * groups, each living in one region (the region of the call that made it), as on EC2.
 *
 * An instance's state comes from its machine: pending while the machine provisions, running
 * with the machine's address, shutting-down while it is being deleted, terminated once the
 * machine is gone (and for good: terminated instances stay visible, with the reason). A
 * machine that died on its own (its power switch, a crash) is deleted, as EC2 would stop or
 * terminate it. Spot instances serve the metadata service on their address while they run; a
 * spot interruption posts the notice there and kills the machine notice_ms later. A 100 ms
 * timer keeps both in step, and closes every metadata service at shutdown. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ec2_impl.h"
#include "providers/aws/aws_impl.h"

ec2_account_t ec2;

static void on_sync(uv_timer_t *t);

void ec2_init(sim_t *sim) {
  if (ec2.init)
    return;
  ec2.init = true;
  const char *ak = getenv("KITE_CLOUDSIM_AWS_ACCESS_KEY_ID");
  const char *sk = getenv("KITE_CLOUDSIM_AWS_SECRET_ACCESS_KEY");
  const char *port = getenv("KITE_CLOUDSIM_IMDS_PORT");
  ec2.access_key = strdup(ak && *ak ? ak : "AKIAKITECLOUDSIM0001");
  ec2.secret = strdup(sk && *sk ? sk : sim->token);
  ec2.imds_port = port && *port ? atoi(port) : 8169;
  ec2.seq = (uint64_t)time(NULL) << 20;
  if (strlen(ec2.secret) >= 4)
    kite_secret_add(sim->rt, ec2.secret);
  ec2.sim = sim;
  uv_timer_init(sim->loop, &ec2.sync);
  uv_timer_start(&ec2.sync, on_sync, 100, 100);
}

bool ec2_here(const char *r) {
  return ec2.region[0] == '\0' || (r && strcmp(r, ec2.region) == 0);
}

/* ---- instances ------------------------------------------------------------------------------ */

const char *ec2_inst_tag(const ec2_inst_t *e, const char *key) {
  for (size_t i = 0; i < e->tag_n; i++)
    if (strcmp(e->tags[i].key, key) == 0)
      return e->tags[i].value;
  return NULL;
}

static const imds_info_t *imds_lookup(void *data) {
  ec2_inst_t *e = data;
  e->info.instance_id = e->id;
  e->info.instance_action = e->notice_json;
  return &e->info;
}

const char *ec2_inst_state(sim_t *sim, ec2_inst_t *e, const char **reason_code,
                           const char **reason_msg) {
  *reason_code = *reason_msg = NULL;
  if (e->final_) {
    if (e->final_reason[0]) {
      *reason_code = e->final_reason;
      *reason_msg = strcmp(e->final_reason, "Server.SpotInstanceTermination") == 0
                        ? "Server.SpotInstanceTermination: Spot instance termination"
                        : "Client.UserInitiatedShutdown: User initiated shutdown";
    }
    return "terminated";
  }
  machine_t *m = machine_find(sim, e->machine_id);
  if (m == NULL) {
    e->final_ = true;
    snprintf(e->final_reason, sizeof(e->final_reason), "%s",
             e->interrupted           ? "Server.SpotInstanceTermination"
             : e->terminate_requested ? "Client.UserInitiatedShutdown"
                                      : "Server.InternalError");
    imds_stop(e->imds);
    e->imds = NULL;
    e->address[0] = '\0';
    return ec2_inst_state(sim, e, reason_code, reason_msg);
  }
  switch (m->state) {
  case M_PROVISIONING:
    return "pending";
  case M_RUNNING:
    snprintf(e->address, sizeof(e->address), "%s", m->address);
    if (e->spot && e->imds == NULL && !e->interrupted) {
      int rc = imds_start(sim->loop, m->address, ec2.imds_port, imds_lookup, e, &e->imds);
      if (rc != 0)
        fprintf(stderr, "kite-cloudsim: %s: cannot serve instance metadata on %s:%d: %s\n", e->id,
                m->address, ec2.imds_port, uv_strerror(rc));
    }
    return "running";
  case M_OFF:
    if (!e->terminate_requested && !e->interrupted) {
      /* The node died on its own (its power switch, a crash): EC2 would show it stopped or
       * terminated; kite treats both as gone. */
      machine_delete(m);
      e->terminate_requested = true;
    }
    return "shutting-down";
  case M_DELETING:
  default:
    return "shutting-down";
  }
}

ec2_inst_t *ec2_inst_find(const char *id) {
  for (ec2_inst_t *e = ec2.insts; id && e; e = e->next)
    if (ec2_here(e->region) && strcmp(e->id, id) == 0)
      return e;
  return NULL;
}

unsigned ec2_live_count(sim_t *sim) {
  unsigned n = 0;
  const char *rc, *rm;
  for (ec2_inst_t *e = ec2.insts; e; e = e->next)
    n += strcmp(ec2_inst_state(sim, e, &rc, &rm), "terminated") != 0;
  return n;
}

static void inst_free(ec2_inst_t *e) {
  free(e->client_token);
  free(e->image);
  free(e->type);
  free(e->key_name);
  free(e->sg_id);
  free(e->subnet);
  free(e->region);
  free(e->notice_json);
  for (size_t i = 0; i < e->tag_n; i++) {
    free(e->tags[i].key);
    free(e->tags[i].value);
  }
  free(e->tags);
  free(e);
}

static char *dup_or_null(const char *s) {
  return s ? strdup(s) : NULL;
}

ec2_inst_t *ec2_inst_launch(sim_t *sim, const ec2_launch_t *l) {
  ec2_inst_t *e = calloc(1, sizeof(*e));
  snprintf(e->id, sizeof(e->id), "i-%017llx", (unsigned long long)++ec2.seq);
  snprintf(e->reservation, sizeof(e->reservation), "r-%017llx", (unsigned long long)ec2.seq);
  e->client_token = dup_or_null(l->client_token);
  e->image = strdup(l->image);
  e->type = strdup(l->type ? l->type : "m1.small");
  e->key_name = strdup(l->key_name);
  e->sg_id = dup_or_null(l->sg_id);
  e->subnet = dup_or_null(l->subnet);
  e->region = strdup(l->region);
  snprintf(e->zone, sizeof(e->zone), "%s", l->zone);
  e->spot = l->spot;
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(e->launch_time, sizeof(e->launch_time), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
  if (l->tag_n)
    e->tags = calloc(l->tag_n, sizeof(ec2_kv_t));
  for (size_t i = 0; i < l->tag_n; i++) {
    e->tags[i].key = strdup(l->tags[i].key);
    e->tags[i].value = strdup(l->tags[i].value ? l->tags[i].value : "");
  }
  e->tag_n = l->tag_n;
  /* The node carries the pool tag first, so a test can count what runs for its pool. */
  const char *pool = ec2_inst_tag(e, "kite:pool");
  const char *tags[1] = {pool ? pool : "kite-cloudsim-ec2"};
  const char *name = ec2_inst_tag(e, "Name");
  machine_opts_t mo = {
      .name = name ? name : e->id,
      .tags = tags,
      .tag_n = 1,
      .region = l->region,
      .size = e->type,
      .image = l->image,
      .user_data = l->user_data,
      .authorized_key = l->authorized_key,
      .cloud = EC2_CLOUD,
      .price_hourly = l->price_hourly,
      /* Linux instances, on demand and spot, are billed per second with a
       * 60-second minimum ("Announcing Amazon EC2 per second billing",
       * https://aws.amazon.com/about-aws/whats-new/2017/10/announcing-amazon-ec2-per-second-billing/).
       */
      .bill_increment_s = 1,
      .bill_minimum_s = 60,
      .spot = l->spot};
  machine_t *m = machine_create(sim, &mo);
  if (m == NULL) {
    inst_free(e);
    return NULL;
  }
  e->machine_id = m->id;
  e->next = ec2.insts;
  ec2.insts = e;
  ec2.created++;
  unsigned live = ec2_live_count(sim);
  if (live > ec2.peak)
    ec2.peak = live;
  fprintf(stderr, "kite-cloudsim: ec2 %s (%s%s) on machine %llu\n", e->id, e->type,
          e->spot ? ", spot" : "", (unsigned long long)m->id);
  return e;
}

void ec2_inst_terminate(sim_t *sim, ec2_inst_t *e) {
  e->terminate_requested = true;
  e->interrupt_due = 0;
  machine_t *m = machine_find(sim, e->machine_id);
  if (m)
    machine_delete(m);
  imds_stop(e->imds);
  e->imds = NULL;
}

const char *ec2_inst_interrupt(sim_t *sim, ec2_inst_t *e, uint64_t notice) {
  /* instance-action's time has second precision, as EC2's does. */
  static char ts[32];
  time_t when = time(NULL) + (time_t)((notice + 999) / 1000);
  struct tm tm;
  gmtime_r(&when, &tm);
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
  free(e->notice_json);
  e->notice_json = sim_sprintf("{\"action\": \"terminate\", \"time\": \"%s\"}", ts);
  e->interrupt_due = uv_now(sim->loop) + notice;
  if (e->interrupt_due == 0)
    e->interrupt_due = 1;
  fprintf(stderr, "kite-cloudsim: ec2 %s: spot interruption notice, dies at %s\n", e->id, ts);
  return ts;
}

static void interrupt_now(sim_t *sim, ec2_inst_t *e) {
  e->interrupt_due = 0;
  e->interrupted = true;
  machine_t *m = machine_find(sim, e->machine_id);
  fprintf(stderr, "kite-cloudsim: ec2 %s: spot interruption, the instance dies now\n", e->id);
  imds_stop(e->imds);
  e->imds = NULL;
  if (m)
    machine_kill(m, true);
}

static void on_sync_closed(uv_handle_t *h) {
  (void)h;
  ec2.sync_closed = true;
}

/* Every 100 ms: instances that became running get their metadata service; due interruptions
 * happen; at shutdown every metadata service is closed, then this timer. */
static void on_sync(uv_timer_t *t) {
  sim_t *sim = ec2.sim;
  uint64_t now = uv_now(t->loop);
  for (ec2_inst_t *e = ec2.insts; e; e = e->next) {
    if (sim->stopping) {
      imds_stop(e->imds);
      e->imds = NULL;
      continue;
    }
    if (e->interrupt_due && now >= e->interrupt_due)
      interrupt_now(sim, e);
    const char *rc, *rm;
    (void)ec2_inst_state(sim, e, &rc, &rm);
  }
  if (sim->stopping)
    uv_close((uv_handle_t *)&ec2.sync, on_sync_closed);
}

/* ---- key pairs ------------------------------------------------------------------------------ */

ec2_key_pair_t *ec2_key_find(const char *name) {
  for (ec2_key_pair_t *k = ec2.keys; name && k; k = k->next)
    if (ec2_here(k->region) && strcmp(k->name, name) == 0)
      return k;
  return NULL;
}

ec2_key_pair_t *ec2_key_add(const char *name, char *material, bool managed) {
  ec2_key_pair_t *k = calloc(1, sizeof(*k));
  k->name = strdup(name);
  k->material = material;
  k->id = sim_sprintf("key-%017llx", (unsigned long long)++ec2.seq);
  char h[65];
  kite__aws_sha256_hex(material, strlen(material), h);
  k->fingerprint = sim_sprintf("%.43s=", h);
  k->managed = managed;
  k->region = strdup(ec2.region);
  k->next = ec2.keys;
  ec2.keys = k;
  return k;
}

static void key_free(ec2_key_pair_t *k) {
  free(k->name);
  free(k->id);
  free(k->material);
  free(k->fingerprint);
  free(k->region);
  free(k);
}

void ec2_key_delete(const char *name) {
  for (ec2_key_pair_t **pp = &ec2.keys; name && *pp; pp = &(*pp)->next)
    if (ec2_here((*pp)->region) && strcmp((*pp)->name, name) == 0) {
      ec2_key_pair_t *k = *pp;
      *pp = k->next;
      key_free(k);
      break;
    }
}

/* ---- security groups ------------------------------------------------------------------------ */

ec2_sgroup_t *ec2_group_find(const char *id, const char *name) {
  for (ec2_sgroup_t *s = ec2.groups; s; s = s->next)
    if (ec2_here(s->region) &&
        ((id && strcmp(s->id, id) == 0) || (!id && name && strcmp(s->name, name) == 0)))
      return s;
  return NULL;
}

ec2_sgroup_t *ec2_group_add(const char *name, const char *description, bool managed) {
  ec2_sgroup_t *s = calloc(1, sizeof(*s));
  s->id = sim_sprintf("sg-%017llx", (unsigned long long)++ec2.seq);
  s->name = strdup(name);
  s->description = strdup(description);
  s->perms = strdup("");
  s->managed = managed;
  s->region = strdup(ec2.region);
  s->next = ec2.groups;
  ec2.groups = s;
  return s;
}

bool ec2_group_in_use(sim_t *sim, const ec2_sgroup_t *s) {
  const char *rc, *rm;
  for (ec2_inst_t *e = ec2.insts; e; e = e->next)
    if (e->sg_id && strcmp(e->sg_id, s->id) == 0 &&
        strcmp(ec2_inst_state(sim, e, &rc, &rm), "terminated") != 0)
      return true;
  return false;
}

bool ec2_group_allow(ec2_sgroup_t *s, const char *proto, const char *from, const char *to,
                     const char *cidr) {
  char *line = sim_sprintf("%s:%s-%s:%s\n", proto, from ? from : "-1", to ? to : "-1", cidr);
  if (strstr(s->perms, line)) {
    free(line);
    return false;
  }
  char *np = sim_sprintf("%s%s", s->perms, line);
  free(s->perms);
  s->perms = np;
  free(line);
  return true;
}

static void group_free(ec2_sgroup_t *s) {
  free(s->id);
  free(s->name);
  free(s->description);
  free(s->region);
  free(s->perms);
  free(s);
}

void ec2_group_delete(ec2_sgroup_t *s) {
  for (ec2_sgroup_t **pp = &ec2.groups; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  group_free(s);
}

void ec2_account_free(void) {
  /* Instances' timers and metadata services belong to the loop, which is gone by now: only
   * memory is left to free. */
  while (ec2.insts) {
    ec2_inst_t *e = ec2.insts;
    ec2.insts = e->next;
    inst_free(e);
  }
  while (ec2.keys) {
    ec2_key_pair_t *k = ec2.keys;
    ec2.keys = k->next;
    key_free(k);
  }
  while (ec2.groups) {
    ec2_sgroup_t *s = ec2.groups;
    ec2.groups = s->next;
    group_free(s);
  }
  free(ec2.access_key);
  free(ec2.secret);
  memset(&ec2, 0, sizeof(ec2));
}
