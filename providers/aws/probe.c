/* The on-node spot interruption notice: a probe that the preemption monitor runs on the node
 * over its existing SSH session (DESIGN.md: the provider describes it, the monitor runs it).
 *
 * EC2 announces a spot interruption two minutes ahead in the instance metadata service:
 * /latest/meta-data/spot/instance-action answers 404 until then, and then
 * {"action": "terminate", "time": "2017-09-18T08:22:00Z"}. The command asks for an IMDSv2
 * session token first (PUT /latest/api/token), as instances that require IMDSv2 insist on,
 * and prints the body followed by the HTTP status on a line of its own. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws_impl.h"
#include "kite/error.h"
#include "kite/provider.h"
#include "kite_impl.h"

char *kite__aws_imds_endpoint(const char *tmpl, const char *address) {
  static const char mark[] = "{address}";
  if (tmpl == NULL)
    return NULL;
  size_t n = 0;
  for (const char *p = tmpl; (p = strstr(p, mark)) != NULL; p += sizeof(mark) - 1)
    n++;
  size_t al = address ? strlen(address) : 0;
  char *out = malloc(strlen(tmpl) + n * al + 1);
  if (out == NULL)
    return NULL;
  char *o = out;
  for (const char *p = tmpl; *p;) {
    if (strncmp(p, mark, sizeof(mark) - 1) == 0) {
      if (al)
        memcpy(o, address, al);
      o += al;
      p += sizeof(mark) - 1;
    } else {
      *o++ = *p++;
    }
  }
  *o = '\0';
  /* No trailing slash: paths are appended with their own. */
  while (o > out && o[-1] == '/')
    *--o = '\0';
  return out;
}

char *kite__aws_probe_command(const char *endpoint) {
  char *q = kite__shell_quote(endpoint);
  if (q == NULL)
    return NULL;
  /* A node without curl, or a metadata service that does not answer, prints nothing and
   * the probe says "no notice": the API-side check still sees the instance go. */
  char *cmd =
      kite__sprintf("e=%s\n"
                    "t=$(curl -sf -m 3 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
                    "\"$e/latest/api/token\") || exit 0\n"
                    "curl -s -m 3 -w '\\n%%{http_code}\\n' -H \"X-aws-ec2-metadata-token: $t\" "
                    "\"$e/latest/meta-data/spot/instance-action\" || exit 0\n",
                    q);
  free(q);
  return cmd;
}

/* "2017-09-18T08:22:00Z" → ms since the epoch; -1 when it is not that form. */
static int64_t parse_time(const char *s) {
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  int y, mo, d, h, mi, se;
  char z = 0;
  if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &se, &z) != 7 ||
      z != 'Z' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
    return -1;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = se;
  time_t t = timegm(&tm);
  return t < 0 ? -1 : (int64_t)t * 1000;
}

int kite__aws_probe_parse(const char *out, size_t len, int64_t *deadline_ms) {
  *deadline_ms = 0;
  if (out == NULL || len == 0 || len > 65536)
    return KITE_PREEMPT_NONE;
  /* The last non-empty line is the status; what comes before it is the body. */
  size_t end = len;
  while (end > 0 && (out[end - 1] == '\n' || out[end - 1] == '\r'))
    end--;
  size_t start = end;
  while (start > 0 && out[start - 1] != '\n')
    start--;
  char status[8] = "";
  if (end - start >= sizeof(status))
    return KITE_PREEMPT_NONE;
  memcpy(status, out + start, end - start);
  status[end - start] = '\0';
  if (strcmp(status, "200") != 0)
    return KITE_PREEMPT_NONE;
  json_error_t e;
  json_t *j = json_loadb(out, start, JSON_REJECT_DUPLICATES, &e);
  int state = KITE_PREEMPT_NONE;
  const char *action = json_string_value(json_object_get(j, "action"));
  int64_t t = parse_time(json_string_value(json_object_get(j, "time")));
  /* "terminate", "stop" and "hibernate" all take the machine away from the pool. */
  if (action && t >= 0 &&
      (strcmp(action, "terminate") == 0 || strcmp(action, "stop") == 0 ||
       strcmp(action, "hibernate") == 0)) {
    state = KITE_PREEMPT_NOTICE;
    *deadline_ms = t;
  }
  json_decref(j);
  return state;
}
