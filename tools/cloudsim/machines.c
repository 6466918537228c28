/* The emulator's backend: machines, each backed by one real local sshd node (local.h).
 *
 * A machine is PROVISIONING from its creation until its node listens and the configured
 * provisioning delay is over, then RUNNING with the node's loopback address as its public
 * address. Just before it is RUNNING, what cloud-init would do at first boot is done: the
 * ed25519 host key of a cloud-config user data becomes the node's host key, and the machine's
 * further authorized keys join its own in the node's authorized_keys. Deleting stops the
 * node; the machine leaves the list (and every API) only when every process of the node is
 * gone. A kill makes the node die at once, as a crash or a reclaimed spot machine would; the
 * record then stays OFF, or vanishes. API fronts render machines in their own cloud's shapes.
 *
 * The bill: every machine gets a line when it is created, billed from then (wall clock) until
 * it is gone from the API (its node stopped: deleted or vanished), at the price and granularity
 * its front gave it. The line outlives the machine. */
#include <assert.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cloudsim.h"

static void on_timer_closed(uv_handle_t *h) {
  machine_t *m = h->data;
  sim_t *sim = m->sim;
  for (size_t i = 0; i < m->tag_n; i++)
    free(m->tags[i]);
  free(m->tags);
  free(m->name);
  free(m->region);
  free(m->size);
  free(m->image);
  free(m->user_data);
  free(m->authorized_key);
  free(m->more_authorized_keys);
  free(m);
  if (sim->stopping && sim->machines == NULL && sim->stopped_cb) {
    void (*cb)(sim_t *) = sim->stopped_cb;
    sim->stopped_cb = NULL;
    cb(sim);
  }
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The machine's line, brought up to date with what its front set. */
static void bill_sync(const machine_t *m) {
  bill_line_t *l = &m->sim->bill[m->bill_line];
  l->spot = m->spot;
  l->price_hourly = m->price_hourly;
  l->increment_s = m->bill_increment_s;
  l->minimum_s = m->bill_minimum_s;
  l->gone_ms = m->gone_ms;
}

static bool bill_open(machine_t *m) {
  sim_t *sim = m->sim;
  if (sim->bill_n == sim->bill_cap) {
    size_t cap = sim->bill_cap ? sim->bill_cap * 2 : 64;
    bill_line_t *g = realloc(sim->bill, cap * sizeof(*g));
    if (g == NULL)
      return false;
    sim->bill = g;
    sim->bill_cap = cap;
  }
  m->bill_line = sim->bill_n++;
  bill_line_t *l = &sim->bill[m->bill_line];
  *l = (bill_line_t){.id = m->id,
                     .cloud = m->cloud,
                     .size = strdup(m->size),
                     .region = strdup(m->region),
                     .created_ms = m->created_ms};
  bill_sync(m);
  return true;
}

static void machine_forget(machine_t *m) {
  sim_t *sim = m->sim;
  m->gone_ms = wall_ms();
  bill_sync(m);
  for (machine_t **pp = &sim->machines; *pp; pp = &(*pp)->next)
    if (*pp == m) {
      *pp = m->next;
      break;
    }
  sim->deleted_total++;
  uv_timer_stop(&m->timer);
  uv_close((uv_handle_t *)&m->timer, on_timer_closed);
}

static void on_node_stopped(kite_local_node_t *n, int status, void *data) {
  machine_t *m = data;
  (void)n;
  (void)status;
  m->node = NULL;
  m->node_stopping = false;
  m->address[0] = '\0';
  if (m->state == M_DELETING || m->vanish_when_dead || m->sim->stopping) {
    fprintf(stderr, "kite-cloudsim: machine %llu (%s) is gone\n", (unsigned long long)m->id,
            m->name);
    machine_forget(m);
    return;
  }
  m->state = M_OFF;
}

static void stop_node(machine_t *m) {
  if (m->node && !m->node_stopping) {
    m->node_stopping = true;
    kite_local_node_stop(m->node, on_node_stopped, m);
  } else if (m->node == NULL) {
    machine_forget(m);
  }
}

/* ---- cloud-init ----------------------------------------------------------------------------- */

/* The ed25519 host key pair of a cloud-config (cloud-init's ssh_keys), or false. */
static bool cloud_config_host_key(const char *ud, char **priv, char **pub) {
  *priv = *pub = NULL;
  if (ud == NULL || strncmp(ud, "#cloud-config", 13) != 0)
    return false;
  const char *p = strstr(ud, "\n  ed25519_private: |\n");
  const char *q = strstr(ud, "\n  ed25519_public: ");
  if (p == NULL || q == NULL)
    return false;
  p += strlen("\n  ed25519_private: |\n");
  char *k = malloc(strlen(p) + 1);
  size_t o = 0;
  while (k && strncmp(p, "    ", 4) == 0) {
    p += 4;
    size_t l = strcspn(p, "\n");
    memcpy(k + o, p, l);
    o += l;
    k[o++] = '\n';
    p += l + (p[l] == '\n');
  }
  if (k)
    k[o] = '\0';
  q += strlen("\n  ed25519_public: ");
  *priv = k;
  *pub = strndup(q, strcspn(q, "\r\n"));
  return *priv && *pub && o > 0;
}

char *sim_cloud_config_authorized_key(const char *ud) {
  if (ud == NULL || strncmp(ud, "#cloud-config", 13) != 0)
    return NULL;
  const char *p = strstr(ud, "\nssh_authorized_keys:");
  if (p == NULL)
    return NULL;
  p = strchr(p + 1, '\n');
  while (p && (p[1] == ' ' || p[1] == '\t'))
    p++;
  if (p == NULL || p[1] != '-')
    return NULL;
  p += 2;
  while (*p == ' ')
    p++;
  size_t n = strcspn(p, "\r\n");
  /* A quoted YAML string. */
  if (n >= 2 && (*p == '"' || *p == '\'') && p[n - 1] == *p) {
    p++;
    n -= 2;
  }
  return n ? strndup(p, n) : NULL;
}

static void write_file(const char *path, const char *text, mode_t mode) {
  char *tmp = sim_sprintf("%s.tmp", path);
  FILE *fp = tmp ? fopen(tmp, "w") : NULL;
  if (fp) {
    fchmod(fileno(fp), mode);
    fputs(text, fp);
    fclose(fp);
    rename(tmp, path);
  }
  free(tmp);
}

/* Installs user_data's host key as the node's (its sshd reads the key per connection). */
static void apply_host_key(machine_t *m) {
  char *priv = NULL, *pub = NULL;
  if (m->node == NULL || !cloud_config_host_key(m->user_data, &priv, &pub)) {
    free(priv);
    free(pub);
    return;
  }
  /* The node keeps sshd's files in sshd/ beside its work directory. */
  char *root = strdup(kite_local_node_dir(m->node));
  char *slash = root ? strrchr(root, '/') : NULL;
  if (slash) {
    *slash = '\0';
    char *kp = sim_sprintf("%s/sshd/host_key", root);
    char *pp = sim_sprintf("%s/sshd/host_key.pub", root);
    char *publine = sim_sprintf("%s\n", pub);
    if (kp && pp && publine) {
      write_file(kp, priv, 0600);
      write_file(pp, publine, 0644);
    }
    free(kp);
    free(pp);
    free(publine);
  }
  free(root);
  free(priv);
  free(pub);
}

/* Appends the machine's further authorized keys to the node's ~/.ssh/authorized_keys, where its
 * own key already is, as cloud-init writes every key of the account it is given. */
static void apply_more_keys(machine_t *m) {
  if (m->node == NULL || m->more_authorized_keys == NULL || *m->more_authorized_keys == '\0')
    return;
  char *path = sim_sprintf("%s/.ssh/authorized_keys", kite_local_node_dir(m->node));
  FILE *fp = path ? fopen(path, "a") : NULL;
  if (fp) {
    size_t n = strlen(m->more_authorized_keys);
    fputs(m->more_authorized_keys, fp);
    if (m->more_authorized_keys[n - 1] != '\n')
      fputc('\n', fp);
    fclose(fp);
  } else {
    fprintf(stderr, "kite-cloudsim: machine %llu: cannot add its further keys to %s\n",
            (unsigned long long)m->id, path ? path : "authorized_keys");
  }
  free(path);
}

char *sim_key_fingerprint(const char *public_key) {
  const char *sp = strchr(public_key, ' ');
  if (sp == NULL)
    return NULL;
  const char *b64 = sp + 1;
  size_t n = strcspn(b64, " \r\n");
  if (n == 0 || n % 4 != 0 || n > 16384)
    return NULL;
  unsigned char *blob = malloc(n);
  int len = EVP_DecodeBlock(blob, (const unsigned char *)b64, (int)n);
  if (len <= 0) {
    free(blob);
    return NULL;
  }
  while (n > 0 && b64[n - 1] == '=') { /* EVP_DecodeBlock counts padding as zero bytes */
    len--;
    n--;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  EVP_Digest(blob, (size_t)len, md, &mdlen, EVP_md5(), NULL);
  free(blob);
  char *out = calloc(mdlen * 3 + 1, 1);
  for (unsigned i = 0; i < mdlen; i++)
    sprintf(out + i * 3, i + 1 < mdlen ? "%02x:" : "%02x", md[i]);
  return out;
}

/* ---- life ------------------------------------------------------------------------------------ */

static void on_provisioned(uv_timer_t *t) {
  machine_t *m = t->data;
  if (m->state == M_PROVISIONING && m->node) {
    apply_host_key(m);
    apply_more_keys(m);
    snprintf(m->address, sizeof(m->address), "%s", kite_local_node_address(m->node));
    m->state = M_RUNNING;
  }
}

static void on_node_started(kite_local_node_t *n, int status, void *data) {
  machine_t *m = data;
  if (status == KITE_ECANCELED)
    return; /* deleted while starting: on_node_stopped follows */
  if (status != 0) {
    fprintf(stderr, "kite-cloudsim: machine %llu: its node could not start: %s\n",
            (unsigned long long)m->id, kite_strerror(status));
    m->state = M_OFF;
    return;
  }
  (void)n;
  m->node_up = true;
  if (m->state != M_PROVISIONING)
    return;
  uv_timer_start(&m->timer, on_provisioned, m->sim->faults.provision_ms, 0);
}

machine_t *machine_create(sim_t *sim, const machine_opts_t *o) {
  machine_t *m = calloc(1, sizeof(*m));
  if (m == NULL)
    return NULL;
  m->sim = sim;
  m->id = sim->next_machine_id++;
  assert(o->cloud != NULL);
  m->cloud = o->cloud;
  m->name = strdup(o->name);
  m->tags = calloc(o->tag_n + 1, sizeof(char *));
  for (size_t i = 0; i < o->tag_n; i++)
    m->tags[i] = strdup(o->tags[i]);
  m->tag_n = o->tag_n;
  m->region = strdup(o->region ? o->region : "nyc3");
  m->size = strdup(o->size ? o->size : "s-1vcpu-1gb");
  m->image = strdup(o->image ? o->image : "ubuntu-24-04-x64");
  m->user_data = o->user_data ? strdup(o->user_data) : NULL;
  m->authorized_key = strdup(o->authorized_key);
  m->more_authorized_keys = o->more_authorized_keys ? strdup(o->more_authorized_keys) : NULL;
  m->price_hourly = o->price_hourly;
  m->bill_increment_s = o->bill_increment_s;
  m->bill_minimum_s = o->bill_minimum_s;
  m->spot = o->spot;
  m->created_ms = wall_ms();
  if (!bill_open(m)) {
    free(m->name);
    free(m->region);
    free(m->size);
    free(m->image);
    free(m->user_data);
    free(m->authorized_key);
    free(m->more_authorized_keys);
    for (size_t i = 0; i < m->tag_n; i++)
      free(m->tags[i]);
    free(m->tags);
    free(m);
    return NULL;
  }
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(m->created_at, sizeof(m->created_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
  m->state = M_PROVISIONING;
  uv_timer_init(sim->loop, &m->timer);
  m->timer.data = m;
  m->next = sim->machines;
  sim->machines = m;
  sim->created_total++;
  unsigned live = machine_count(sim);
  if (live > sim->peak)
    sim->peak = live;
  /* The node carries the machine's first tag (or the front's choice), so a test can count what
   * runs for its pool. */
  const char *node_tag = o->node_tag ? o->node_tag : o->tag_n ? o->tags[0] : "kite-cloudsim";
  kite_local_node_options_t no = {.base_dir = sim->node_dir,
                                  .tag = node_tag,
                                  .authorized_key = m->authorized_key,
                                  .port = (uint16_t)sim->ssh_port};
  int rc = kite_local_node_start(sim->rt, &no, on_node_started, m, &m->node);
  if (rc != 0) {
    fprintf(stderr, "kite-cloudsim: machine %llu: cannot start a node: %s\n",
            (unsigned long long)m->id, kite_strerror(rc));
    m->node = NULL;
    m->state = M_OFF;
  }
  return m;
}

machine_t *machine_find(sim_t *sim, uint64_t id) {
  for (machine_t *m = sim->machines; m; m = m->next)
    if (m->id == id)
      return m;
  return NULL;
}

const char *machine_node_address(const machine_t *m) {
  const char *a = m->node ? kite_local_node_address(m->node) : NULL;
  return a ? a : "";
}

bool machine_has_tag(const machine_t *m, const char *tag) {
  for (size_t i = 0; i < m->tag_n; i++)
    if (strcmp(m->tags[i], tag) == 0)
      return true;
  return false;
}

unsigned machine_count_of(sim_t *sim, const char *cloud) {
  unsigned n = 0;
  for (machine_t *m = sim->machines; m; m = m->next)
    n += strcmp(m->cloud, cloud) == 0;
  return n;
}

machine_t *machine_find_of(sim_t *sim, uint64_t id, const char *cloud) {
  machine_t *m = machine_find(sim, id);
  return m && strcmp(m->cloud, cloud) == 0 ? m : NULL;
}

unsigned machine_count(sim_t *sim) {
  unsigned n = 0;
  for (machine_t *m = sim->machines; m; m = m->next)
    n++;
  return n;
}

void machine_delete(machine_t *m) {
  if (m->state == M_DELETING)
    return;
  m->state = M_DELETING;
  uv_timer_stop(&m->timer);
  stop_node(m);
}

void machine_kill(machine_t *m, bool vanish) {
  if (m->state == M_DELETING)
    return;
  m->vanish_when_dead = vanish;
  uv_timer_stop(&m->timer);
  if (m->node) {
    stop_node(m);
  } else if (vanish) {
    m->state = M_DELETING;
    machine_forget(m);
  }
}

void machines_stop_all(sim_t *sim, void (*done)(sim_t *sim)) {
  sim->stopped_cb = done;
  if (sim->machines == NULL) {
    sim->stopped_cb = NULL;
    done(sim);
    return;
  }
  for (machine_t *m = sim->machines, *next; m; m = next) {
    next = m->next;
    machine_delete(m);
  }
}

/* ---- the bill ------------------------------------------------------------------------------- */

/* Seconds billed for a machine that existed from created to gone (ms): whole increments
 * begun (by the second when the increment is 0), never fewer than the minimum. */
static uint64_t billed_seconds(const bill_line_t *l, uint64_t gone) {
  if (gone <= l->created_ms)
    return 0;
  uint64_t lived_ms = gone - l->created_ms, unit = l->increment_s ? l->increment_s : 1;
  uint64_t units = lived_ms / (unit * 1000) + (lived_ms % (unit * 1000) != 0);
  uint64_t s = units * unit;
  return s < l->minimum_s ? l->minimum_s : s;
}

char *machines_bill_json(sim_t *sim) {
  for (machine_t *m = sim->machines; m; m = m->next)
    bill_sync(m);
  uint64_t now = wall_ms();
  json_t *list = json_array();
  double total = 0;
  for (size_t i = 0; i < sim->bill_n; i++) {
    const bill_line_t *l = &sim->bill[i];
    uint64_t s = billed_seconds(l, l->gone_ms ? l->gone_ms : now);
    double cost = l->price_hourly * (double)s / 3600.0;
    total += cost;
    json_array_append_new(
        list,
        json_pack("{s:I, s:s, s:s, s:s, s:b, s:f, s:I, s:I, s:I, s:f}", "id", (json_int_t)l->id,
                  "cloud", l->cloud, "size", l->size, "region", l->region, "spot", l->spot,
                  "price_hourly", l->price_hourly, "created_ms", (json_int_t)l->created_ms,
                  "gone_ms", (json_int_t)l->gone_ms, "billable_s", (json_int_t)s, "cost", cost));
  }
  json_t *j = json_pack("{s:o, s:f}", "machines", list, "total", total);
  char *out = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(12));
  json_decref(j);
  return out;
}

void machines_bill_free(sim_t *sim) {
  for (size_t i = 0; i < sim->bill_n; i++) {
    free(sim->bill[i].size);
    free(sim->bill[i].region);
  }
  free(sim->bill);
  sim->bill = NULL;
  sim->bill_n = sim->bill_cap = 0;
}
