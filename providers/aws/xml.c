/* EC2 responses, parsed with libxml2.
 *
 * EC2 answers in XML in the namespace http://ec2.amazonaws.com/doc/2016-11-15/ (success) or
 * without one (<Response><Errors>…). Elements are matched by local name, so either form and
 * any prefix work. The parser never touches the network (XML_PARSE_NONET), never loads a DTD
 * and never substitutes entities; a document with a DOCTYPE is refused outright, since EC2
 * never sends one and that is where entity expansion attacks live. Text is read only from
 * text and CDATA children, never through entity references. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws_impl.h"
#include "kite_impl.h"

#define MAX_XML (16u << 20)

struct kite__aws_xml {
  xmlDocPtr doc;
};

static bool is(const xmlNode *n, const char *name) {
  return n && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static xmlNode *child(const xmlNode *n, const char *name) {
  for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
    if (is(c, name))
      return c;
  return NULL;
}

/* Concatenated text and CDATA children; NULL when there are none. */
static char *text_of(const xmlNode *n) {
  if (n == NULL)
    return NULL;
  size_t len = 0;
  for (xmlNode *c = n->children; c; c = c->next)
    if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content)
      len += strlen((const char *)c->content);
  char *out = malloc(len + 1);
  if (out == NULL)
    return NULL;
  size_t o = 0;
  for (xmlNode *c = n->children; c; c = c->next)
    if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content) {
      size_t l = strlen((const char *)c->content);
      memcpy(out + o, c->content, l);
      o += l;
    }
  out[o] = '\0';
  /* EC2 values carry no surrounding blanks; pretty-printed bodies do. */
  char *s = out;
  while (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')
    s++;
  size_t n2 = strlen(s);
  while (n2 && (s[n2 - 1] == ' ' || s[n2 - 1] == '\n' || s[n2 - 1] == '\r' || s[n2 - 1] == '\t'))
    n2--;
  memmove(out, s, n2);
  out[n2] = '\0';
  return out;
}

static char *child_text(const xmlNode *n, const char *name) {
  return text_of(child(n, name));
}

int kite__aws_xml_parse(const char *body, size_t len, kite__aws_xml_t **out) {
  *out = NULL;
  if (body == NULL || len == 0 || len > MAX_XML)
    return KITE_EPROTO;
  kite__aws_xml_t *x = calloc(1, sizeof(*x));
  if (x == NULL)
    return KITE_ENOMEM;
  /* No NOENT (entity substitution), no DTDLOAD/DTDATTR/DTDVALID, no HUGE (keeps libxml2's
   * depth and size limits), no network, and quiet: errors are not printed to stderr. */
  int opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA;
  x->doc = xmlReadMemory(body, (int)len, "ec2-response.xml", NULL, opts);
  if (x->doc == NULL || x->doc->intSubset != NULL || x->doc->extSubset != NULL ||
      xmlDocGetRootElement(x->doc) == NULL) {
    kite__aws_xml_free(x);
    return KITE_EPROTO;
  }
  *out = x;
  return 0;
}

void kite__aws_xml_free(kite__aws_xml_t *x) {
  if (x == NULL)
    return;
  if (x->doc)
    xmlFreeDoc(x->doc);
  free(x);
}

const char *kite__aws_xml_root(const kite__aws_xml_t *x) {
  xmlNode *r = x ? xmlDocGetRootElement(x->doc) : NULL;
  return r ? (const char *)r->name : "";
}

bool kite__aws_xml_error(const kite__aws_xml_t *x, char **code, char **message, char **request_id) {
  *code = *message = NULL;
  if (request_id)
    *request_id = NULL;
  xmlNode *r = xmlDocGetRootElement(x->doc);
  xmlNode *e = NULL;
  if (is(r, "Response"))
    e = child(child(r, "Errors"), "Error");
  else if (is(r, "ErrorResponse")) /* the form some AWS query services use */
    e = child(r, "Error");
  if (e == NULL)
    return false;
  *code = child_text(e, "Code");
  *message = child_text(e, "Message");
  if (request_id) {
    *request_id = child_text(r, "RequestID");
    if (*request_id == NULL)
      *request_id = child_text(r, "RequestId");
  }
  if (*code == NULL || **code == '\0') {
    free(*code);
    *code = kite__strdup("Unknown");
  }
  return true;
}

static xmlNode *walk(const kite__aws_xml_t *x, const char *const *path, size_t depth) {
  xmlNode *n = xmlDocGetRootElement(x->doc);
  for (size_t i = 0; n && i < depth; i++)
    n = child(n, path[i]);
  return n;
}

char *kite__aws_xml_text(const kite__aws_xml_t *x, const char *const *path, size_t depth) {
  return text_of(walk(x, path, depth));
}

size_t kite__aws_xml_count(const kite__aws_xml_t *x, const char *const *path, size_t depth) {
  xmlNode *n = walk(x, path, depth);
  size_t k = 0;
  for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
    k += is(c, "item");
  return k;
}

/* ---- instances ------------------------------------------------------------------------------ */

void kite__aws_instances_free(kite__aws_instance_t *v, size_t n) {
  for (size_t i = 0; v && i < n; i++) {
    kite__aws_instance_t *p = &v[i];
    free(p->id);
    free(p->state);
    free(p->public_ip);
    free(p->private_ip);
    free(p->reason_code);
    free(p->reason_message);
    free(p->client_token);
    free(p->lifecycle);
    for (size_t t = 0; t < p->tag_n; t++) {
      free(p->tags[t].key);
      free(p->tags[t].value);
    }
    free(p->tags);
  }
  free(v);
}

static int add_instance(const xmlNode *item, kite__aws_instance_t **v, size_t *n, size_t *cap) {
  char *id = child_text(item, "instanceId");
  if (id == NULL || *id == '\0') {
    free(id);
    return KITE_EPROTO;
  }
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 8;
    kite__aws_instance_t *g = realloc(*v, nc * sizeof(**v));
    if (g == NULL) {
      free(id);
      return KITE_ENOMEM;
    }
    *v = g;
    *cap = nc;
  }
  kite__aws_instance_t *p = &(*v)[(*n)++];
  memset(p, 0, sizeof(*p));
  p->id = id;
  /* DescribeInstances/RunInstances: instanceState; TerminateInstances: currentState. */
  xmlNode *st = child(item, "instanceState");
  if (st == NULL)
    st = child(item, "currentState");
  p->state = child_text(st, "name");
  p->public_ip = child_text(item, "ipAddress");
  p->private_ip = child_text(item, "privateIpAddress");
  xmlNode *reason = child(item, "stateReason");
  p->reason_code = child_text(reason, "code");
  p->reason_message = child_text(reason, "message");
  p->client_token = child_text(item, "clientToken");
  p->lifecycle = child_text(item, "instanceLifecycle");
  size_t tags = 0;
  xmlNode *ts = child(item, "tagSet");
  for (xmlNode *c = ts ? ts->children : NULL; c; c = c->next)
    tags += is(c, "item");
  if (tags) {
    p->tags = calloc(tags, sizeof(*p->tags));
    if (p->tags == NULL)
      return KITE_ENOMEM;
    for (xmlNode *c = ts->children; c; c = c->next)
      if (is(c, "item")) {
        p->tags[p->tag_n].key = child_text(c, "key");
        p->tags[p->tag_n].value = child_text(c, "value");
        p->tag_n++;
      }
  }
  return 0;
}

static int add_set(const xmlNode *set, kite__aws_instance_t **v, size_t *n, size_t *cap) {
  for (xmlNode *c = set ? set->children : NULL; c; c = c->next)
    if (is(c, "item")) {
      int rc = add_instance(c, v, n, cap);
      if (rc != 0)
        return rc;
    }
  return 0;
}

int kite__aws_xml_instances(const kite__aws_xml_t *x, kite__aws_instance_t **out, size_t *n,
                            char **next_token) {
  *out = NULL;
  *n = 0;
  if (next_token)
    *next_token = NULL;
  xmlNode *r = xmlDocGetRootElement(x->doc);
  kite__aws_instance_t *v = NULL;
  size_t cap = 0;
  int rc = 0;
  if (is(r, "RunInstancesResponse") || is(r, "TerminateInstancesResponse")) {
    xmlNode *set = child(r, "instancesSet");
    rc = set ? add_set(set, &v, n, &cap) : KITE_EPROTO;
  } else if (is(r, "DescribeInstancesResponse")) {
    xmlNode *rs = child(r, "reservationSet");
    if (rs == NULL)
      rc = KITE_EPROTO;
    for (xmlNode *c = rs ? rs->children : NULL; c && rc == 0; c = c->next)
      if (is(c, "item"))
        rc = add_set(child(c, "instancesSet"), &v, n, &cap);
    if (rc == 0 && next_token) {
      *next_token = child_text(r, "nextToken");
      if (*next_token && **next_token == '\0') {
        free(*next_token);
        *next_token = NULL;
      }
    }
  } else {
    rc = KITE_EPROTO;
  }
  if (rc != 0) {
    kite__aws_instances_free(v, *n);
    *n = 0;
    if (next_token) {
      free(*next_token);
      *next_token = NULL;
    }
    return rc;
  }
  *out = v;
  return 0;
}

/* ---- the catalog: instance types and spot prices ----------------------------------------------
 */

/* An unsigned decimal number of at most max, the whole text; false for anything else. */
static bool read_u64(const xmlNode *n, uint64_t max, uint64_t *out) {
  char *t = text_of(n);
  bool ok = t && *t >= '0' && *t <= '9';
  char *end = NULL;
  unsigned long long v = ok ? strtoull(t, &end, 10) : 0;
  ok = ok && *end == '\0' && v <= max;
  free(t);
  if (ok)
    *out = v;
  return ok;
}

/* The text of n into a fixed field; false when it is absent, empty or does not fit. */
static bool read_text(const xmlNode *n, char *field, size_t size) {
  char *t = text_of(n);
  bool ok = t && *t && strlen(t) < size;
  if (ok)
    memcpy(field, t, strlen(t) + 1);
  free(t);
  return ok;
}

/* Whether a list element (<item> children) holds value. */
static bool list_has(const xmlNode *list, const char *value) {
  for (xmlNode *c = list ? list->children : NULL; c; c = c->next) {
    char *t = is(c, "item") ? text_of(c) : NULL;
    bool yes = t && strcmp(t, value) == 0;
    free(t);
    if (yes)
      return true;
  }
  return false;
}

/* Grows *v by one zeroed element; NULL when memory ran out. */
static void *grow(void **v, size_t size, size_t *n, size_t *cap) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    void *g = realloc(*v, nc * size);
    if (g == NULL)
      return NULL;
    *v = g;
    *cap = nc;
  }
  char *e = (char *)*v + (*n)++ * size;
  memset(e, 0, size);
  return e;
}

static int read_itype(const xmlNode *item, kite__aws_itype_t *t) {
  uint64_t vcpus = 0;
  if (!read_text(child(item, "instanceType"), t->name, sizeof(t->name)) ||
      !read_u64(child(child(item, "vCpuInfo"), "defaultVCpus"), 1u << 20, &vcpus) ||
      !read_u64(child(child(item, "memoryInfo"), "sizeInMiB"), UINT64_C(1) << 40, &t->memory_mib))
    return KITE_EPROTO;
  t->vcpus = (unsigned)vcpus;
  const xmlNode *arch = child(child(item, "processorInfo"), "supportedArchitectures");
  snprintf(t->arch, sizeof(t->arch), "%s",
           list_has(arch, "x86_64")  ? "x86_64"
           : list_has(arch, "arm64") ? "arm64"
                                     : "");
  t->spot = list_has(child(item, "supportedUsageClasses"), "spot");
  const xmlNode *disk = child(child(item, "instanceStorageInfo"), "totalSizeInGB");
  if (disk && !read_u64(disk, UINT64_C(1) << 30, &t->disk_gb))
    return KITE_EPROTO;
  const xmlNode *gpus = child(child(item, "gpuInfo"), "gpus");
  const xmlNode *g = child(gpus, "item");
  if (g) {
    uint64_t count = 0;
    const xmlNode *mem = child(child(g, "memoryInfo"), "sizeInMiB");
    if (!read_text(child(g, "name"), t->gpu, sizeof(t->gpu)) ||
        !read_u64(child(g, "count"), 1024, &count) ||
        (mem && !read_u64(mem, UINT64_C(1) << 30, &t->gpu_mib)))
      return KITE_EPROTO;
    t->gpu_count = (unsigned)count;
  }
  return 0;
}

static char *next_token_of(const xmlNode *r) {
  char *t = child_text(r, "nextToken");
  if (t && *t == '\0') {
    free(t);
    t = NULL;
  }
  return t;
}

int kite__aws_xml_instance_types(const kite__aws_xml_t *x, kite__aws_itype_t **v, size_t *n,
                                 size_t *cap, char **next_token) {
  *next_token = NULL;
  xmlNode *r = xmlDocGetRootElement(x->doc);
  xmlNode *set = is(r, "DescribeInstanceTypesResponse") ? child(r, "instanceTypeSet") : NULL;
  if (set == NULL)
    return KITE_EPROTO;
  for (xmlNode *c = set->children; c; c = c->next) {
    if (!is(c, "item"))
      continue;
    kite__aws_itype_t *t = grow((void **)v, sizeof(**v), n, cap);
    if (t == NULL)
      return KITE_ENOMEM;
    int rc = read_itype(c, t);
    if (rc != 0)
      return rc;
  }
  *next_token = next_token_of(r);
  return 0;
}

int kite__aws_xml_spot_prices(const kite__aws_xml_t *x, kite__aws_spot_t **v, size_t *n,
                              size_t *cap, char **next_token) {
  *next_token = NULL;
  xmlNode *r = xmlDocGetRootElement(x->doc);
  xmlNode *set = is(r, "DescribeSpotPriceHistoryResponse") ? child(r, "spotPriceHistorySet") : NULL;
  if (set == NULL)
    return KITE_EPROTO;
  for (xmlNode *c = set->children; c; c = c->next) {
    if (!is(c, "item"))
      continue;
    kite__aws_spot_t *s = grow((void **)v, sizeof(**v), n, cap);
    if (s == NULL)
      return KITE_ENOMEM;
    char price[40] = "";
    char *end = NULL;
    if (!read_text(child(c, "instanceType"), s->type, sizeof(s->type)) ||
        !read_text(child(c, "availabilityZone"), s->zone, sizeof(s->zone)) ||
        !read_text(child(c, "spotPrice"), price, sizeof(price)))
      return KITE_EPROTO;
    read_text(child(c, "productDescription"), s->product, sizeof(s->product));
    read_text(child(c, "timestamp"), s->timestamp, sizeof(s->timestamp));
    s->price = strtod(price, &end);
    /* A price is a plain decimal: no sign, no exponent, no "nan" or "inf". */
    if (*end != '\0' || strspn(price, "0123456789.") != strlen(price) || !(s->price >= 0) ||
        s->price > 1e6)
      return KITE_EPROTO;
  }
  *next_token = next_token_of(r);
  return 0;
}
