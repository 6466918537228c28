/* EC2 XML responses: the shapes kite reads, and malformed and hostile bodies (entity bombs,
 * external entities, huge, deep, truncated, random bytes) that must be refused without a crash
 * or a leak (run under ASan in the sanitizer build). Also the spot notice probe's parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kite/kite.h"
#include "providers/aws/aws_impl.h"

#define NS "xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\""

static const char describe_body[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<DescribeInstancesResponse " NS ">\n"
    "  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>\n"
    "  <reservationSet>\n"
    "    <item>\n"
    "      <reservationId>r-1234567890abcdef0</reservationId>\n"
    "      <ownerId>123456789012</ownerId>\n"
    "      <groupSet/>\n"
    "      <instancesSet>\n"
    "        <item>\n"
    "          <instanceId>i-1234567890abcdef0</instanceId>\n"
    "          <imageId>ami-bff32ccc</imageId>\n"
    "          <instanceState><code>16</code><name>running</name></instanceState>\n"
    "          <privateIpAddress>192.168.1.88</privateIpAddress>\n"
    "          <ipAddress>54.194.252.215</ipAddress>\n"
    "          <clientToken>kite-abc</clientToken>\n"
    "          <instanceLifecycle>spot</instanceLifecycle>\n"
    "          <tagSet>\n"
    "            <item><key>kite:pool</key><value>kite-pool-a</value></item>\n"
    "            <item><key>Name</key><value><![CDATA[kite-pool-a-0]]></value></item>\n"
    "          </tagSet>\n"
    "        </item>\n"
    "        <item>\n"
    "          <instanceId>i-0598c7d356eba48d7</instanceId>\n"
    "          <instanceState><code>48</code><name>terminated</name></instanceState>\n"
    "          <stateReason><code>Server.SpotInstanceTermination</code>\n"
    "            <message>Server.SpotInstanceTermination: Spot instance termination</message>\n"
    "          </stateReason>\n"
    "        </item>\n"
    "      </instancesSet>\n"
    "    </item>\n"
    "    <item><reservationId>r-2</reservationId><instancesSet>\n"
    "      <item><instanceId>i-3</instanceId><instanceState><name>pending</name>"
    "</instanceState></item>\n"
    "    </instancesSet></item>\n"
    "  </reservationSet>\n"
    "  <nextToken>page-2</nextToken>\n"
    "</DescribeInstancesResponse>\n";

static void test_describe_instances(void **state) {
  (void)state;
  kite__aws_xml_t *x = NULL;
  assert_int_equal(kite__aws_xml_parse(describe_body, sizeof(describe_body) - 1, &x), 0);
  assert_string_equal(kite__aws_xml_root(x), "DescribeInstancesResponse");
  char *c = NULL, *m = NULL;
  assert_false(kite__aws_xml_error(x, &c, &m, NULL));
  kite__aws_instance_t *v = NULL;
  size_t n = 0;
  char *next = NULL;
  assert_int_equal(kite__aws_xml_instances(x, &v, &n, &next), 0);
  assert_int_equal(n, 3);
  assert_string_equal(next, "page-2");
  assert_string_equal(v[0].id, "i-1234567890abcdef0");
  assert_string_equal(v[0].state, "running");
  assert_string_equal(v[0].public_ip, "54.194.252.215");
  assert_string_equal(v[0].private_ip, "192.168.1.88");
  assert_string_equal(v[0].client_token, "kite-abc");
  assert_string_equal(v[0].lifecycle, "spot");
  assert_int_equal(v[0].tag_n, 2);
  assert_string_equal(v[0].tags[0].key, "kite:pool");
  assert_string_equal(v[0].tags[1].value, "kite-pool-a-0");
  assert_null(v[0].reason_code);
  assert_string_equal(v[1].state, "terminated");
  assert_string_equal(v[1].reason_code, "Server.SpotInstanceTermination");
  assert_null(v[1].public_ip);
  assert_string_equal(v[2].id, "i-3");
  kite__aws_instances_free(v, n);
  free(next);
  kite__aws_xml_free(x);
}

static void test_run_and_terminate(void **state) {
  (void)state;
  static const char run[] =
      "<RunInstancesResponse " NS "><requestId>r</requestId><reservationId>r-1</reservationId>"
      "<instancesSet><item><instanceId>i-0a</instanceId><instanceState><code>0</code>"
      "<name>pending</name></instanceState></item></instancesSet></RunInstancesResponse>";
  static const char term[] =
      "<TerminateInstancesResponse " NS "><requestId>r</requestId><instancesSet><item>"
      "<instanceId>i-0a</instanceId><currentState><code>32</code><name>shutting-down</name>"
      "</currentState><previousState><code>16</code><name>running</name></previousState>"
      "</item></instancesSet></TerminateInstancesResponse>";
  kite__aws_xml_t *x = NULL;
  kite__aws_instance_t *v = NULL;
  size_t n = 0;
  assert_int_equal(kite__aws_xml_parse(run, sizeof(run) - 1, &x), 0);
  assert_int_equal(kite__aws_xml_instances(x, &v, &n, NULL), 0);
  assert_int_equal(n, 1);
  assert_string_equal(v[0].state, "pending");
  kite__aws_instances_free(v, n);
  kite__aws_xml_free(x);
  assert_int_equal(kite__aws_xml_parse(term, sizeof(term) - 1, &x), 0);
  assert_int_equal(kite__aws_xml_instances(x, &v, &n, NULL), 0);
  assert_string_equal(v[0].state, "shutting-down");
  kite__aws_instances_free(v, n);
  kite__aws_xml_free(x);
}

static void test_error_response(void **state) {
  (void)state;
  static const char body[] =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>"
      "<Code>InsufficientInstanceCapacity</Code><Message>We currently do not have sufficient "
      "p3.2xlarge capacity in the Availability Zone you requested.</Message></Error></Errors>"
      "<RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>";
  kite__aws_xml_t *x = NULL;
  assert_int_equal(kite__aws_xml_parse(body, sizeof(body) - 1, &x), 0);
  char *code, *msg, *rid;
  assert_true(kite__aws_xml_error(x, &code, &msg, &rid));
  assert_string_equal(code, "InsufficientInstanceCapacity");
  assert_non_null(strstr(msg, "p3.2xlarge"));
  assert_string_equal(rid, "ea966190-f9aa-478e-9ede-example");
  free(code);
  free(msg);
  free(rid);
  kite__aws_instance_t *v = NULL;
  size_t n = 0;
  assert_int_equal(kite__aws_xml_instances(x, &v, &n, NULL), KITE_EPROTO);
  kite__aws_xml_free(x);
}

static void test_paths(void **state) {
  (void)state;
  static const char body[] =
      "<DescribeSecurityGroupsResponse " NS "><securityGroupInfo><item><groupId>sg-1</groupId>"
      "<groupName>kite-ssh</groupName></item><item><groupId>sg-2</groupId></item>"
      "</securityGroupInfo></DescribeSecurityGroupsResponse>";
  kite__aws_xml_t *x = NULL;
  assert_int_equal(kite__aws_xml_parse(body, sizeof(body) - 1, &x), 0);
  const char *const p[] = {"securityGroupInfo", "item", "groupId"};
  char *id = kite__aws_xml_text(x, p, 3);
  assert_string_equal(id, "sg-1");
  free(id);
  assert_int_equal(kite__aws_xml_count(x, p, 1), 2);
  const char *const q[] = {"nothing", "here"};
  assert_null(kite__aws_xml_text(x, q, 2));
  assert_int_equal(kite__aws_xml_count(x, q, 2), 0);
  kite__aws_xml_free(x);
}

static void expect_refused(const char *what, const char *body, size_t len) {
  kite__aws_xml_t *x = NULL;
  int rc = kite__aws_xml_parse(body, len, &x);
  if (rc != KITE_EPROTO)
    fail_msg("%s: parse returned %d, want KITE_EPROTO", what, rc);
  assert_null(x);
}

static void test_hostile_bodies(void **state) {
  (void)state;
  static const char laughs[] =
      "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n"
      " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
      " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
      " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
      " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
      " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
      " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
      " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
      " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
      " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
      "]>\n<Response><Errors><Error><Code>&lol9;</Code></Error></Errors></Response>";
  expect_refused("billion laughs", laughs, sizeof(laughs) - 1);
  static const char xxe[] =
      "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
      "<Response><Errors><Error><Code>&x;</Code></Error></Errors></Response>";
  expect_refused("external entity", xxe, sizeof(xxe) - 1);
  static const char net_dtd[] =
      "<?xml version=\"1.0\"?><!DOCTYPE r SYSTEM \"http://127.0.0.1:9/evil.dtd\"><r/>";
  expect_refused("external DTD", net_dtd, sizeof(net_dtd) - 1);
  expect_refused("empty", "", 0);
  expect_refused("not XML", "{\"droplet\": [}", 14);
  expect_refused("HTML error page", "<html><body>502 Bad Gateway</body>", 34);
  /* Every truncation of a real response is refused or parsed; none crashes. */
  for (size_t cut = 0; cut < sizeof(describe_body) - 1; cut += 7) {
    kite__aws_xml_t *x = NULL;
    if (kite__aws_xml_parse(describe_body, cut, &x) == 0) {
      kite__aws_instance_t *v = NULL;
      size_t n = 0;
      char *next = NULL;
      if (kite__aws_xml_instances(x, &v, &n, &next) == 0)
        kite__aws_instances_free(v, n);
      free(next);
      kite__aws_xml_free(x);
    }
  }
  /* Too deep: libxml2's nesting limit (no XML_PARSE_HUGE). */
  size_t depth = 100000, o = 0;
  char *deep = malloc(depth * 7 + 16);
  for (size_t i = 0; i < depth; i++)
    o += (size_t)sprintf(deep + o, "<a>");
  expect_refused("deep", deep, o);
  free(deep);
  /* Over 16 MiB. */
  size_t big = (16u << 20) + 100;
  char *huge = malloc(big);
  memset(huge, ' ', big);
  memcpy(huge, "<Response><Errors>", 18);
  expect_refused("huge", huge, big);
  free(huge);
  /* Random bytes. */
  unsigned seed = 12345;
  char junk[4096];
  for (int round = 0; round < 200; round++) {
    size_t n = (size_t)(seed % sizeof(junk));
    for (size_t i = 0; i < n; i++) {
      seed = seed * 1103515245u + 12345u;
      junk[i] = (char)(seed >> 16);
    }
    if (n > 2) {
      junk[0] = '<';
      junk[1] = 'R';
    }
    kite__aws_xml_t *x = NULL;
    if (kite__aws_xml_parse(junk, n, &x) == 0)
      kite__aws_xml_free(x);
  }
}

static void test_missing_instance_id(void **state) {
  (void)state;
  static const char body[] = "<RunInstancesResponse><instancesSet><item><instanceState><name>"
                             "pending</name></instanceState></item></instancesSet>"
                             "</RunInstancesResponse>";
  kite__aws_xml_t *x = NULL;
  assert_int_equal(kite__aws_xml_parse(body, sizeof(body) - 1, &x), 0);
  kite__aws_instance_t *v = NULL;
  size_t n = 0;
  assert_int_equal(kite__aws_xml_instances(x, &v, &n, NULL), KITE_EPROTO);
  assert_null(v);
  kite__aws_xml_free(x);
}

static void test_probe_parse(void **state) {
  (void)state;
  int64_t d = -1;
  const char notice[] = "{\"action\": \"terminate\", \"time\": \"2017-09-18T08:22:00Z\"}\n200\n";
  assert_int_equal(kite__aws_probe_parse(notice, sizeof(notice) - 1, &d), KITE_PREEMPT_NOTICE);
  assert_int_equal(d, 1505722920000LL);
  const char none[] = "<?xml version=\"1.0\"?><Error><Code>NotFound</Code></Error>\n404\n";
  assert_int_equal(kite__aws_probe_parse(none, sizeof(none) - 1, &d), KITE_PREEMPT_NONE);
  assert_int_equal(kite__aws_probe_parse("", 0, &d), KITE_PREEMPT_NONE);
  const char bad_time[] = "{\"action\": \"terminate\", \"time\": \"soon\"}\n200\n";
  assert_int_equal(kite__aws_probe_parse(bad_time, sizeof(bad_time) - 1, &d), KITE_PREEMPT_NONE);
  const char junk[] = "{\"action\": [}\n200";
  assert_int_equal(kite__aws_probe_parse(junk, sizeof(junk) - 1, &d), KITE_PREEMPT_NONE);
  char *e = kite__aws_imds_endpoint("http://{address}:8169/", "127.0.1.9");
  assert_string_equal(e, "http://127.0.1.9:8169");
  free(e);
  char *cmd = kite__aws_probe_command("http://169.254.169.254");
  assert_non_null(strstr(cmd, "/latest/api/token"));
  assert_non_null(strstr(cmd, "X-aws-ec2-metadata-token-ttl-seconds"));
  assert_non_null(strstr(cmd, "/latest/meta-data/spot/instance-action"));
  free(cmd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_describe_instances), cmocka_unit_test(test_run_and_terminate),
      cmocka_unit_test(test_error_response),     cmocka_unit_test(test_paths),
      cmocka_unit_test(test_hostile_bodies),     cmocka_unit_test(test_missing_instance_id),
      cmocka_unit_test(test_probe_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
