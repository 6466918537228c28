/* Signature Version 4 against AWS's published test suite (signature-v4-test-suite: requests
 * signed with access key AKIDEXAMPLE, secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, region
 * us-east-1, service "service", at 20150830T123600Z). Each case carries the suite's request and
 * its expected canonical request, string to sign and Authorization header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kite/kite.h"
#include "providers/aws/aws_impl.h"

#define AK "AKIDEXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define DATE "20150830T123600Z"
#define SCOPE "20150830/us-east-1/service/aws4_request"
#define EMPTY_HASH "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct vector {
  const char *name;
  const char *method, *path, *query;
  const char *headers[8];
  const char *body;
  const char *creq, *sts, *authz;
} vector_t;

static const vector_t vectors[] = {
    {"get-vanilla",
     "GET",
     "/",
     NULL,
     {"Host:example.amazonaws.com", "X-Amz-Date:" DATE},
     NULL,
     "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:" DATE "\n\nhost;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=host;x-amz-date, "
     "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-vanilla-query-order-key-case",
     "GET",
     "/",
     "Param2=value2&Param1=value1",
     {"Host:example.amazonaws.com", "X-Amz-Date:" DATE},
     NULL,
     "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:" DATE
     "\n\nhost;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\n816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=host;x-amz-date, "
     "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
    {"get-vanilla-query-order-key",
     "GET",
     "/",
     "Param1=value2&Param1=Value1",
     {"Host:example.amazonaws.com", "X-Amz-Date:" DATE},
     NULL,
     "GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\nx-amz-date:" DATE
     "\n\nhost;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\n704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=host;x-amz-date, "
     "Signature=eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1"},
    {"get-vanilla-query-order-value",
     "GET",
     "/",
     "Param1=value2&Param1=value1",
     {"Host:example.amazonaws.com", "X-Amz-Date:" DATE},
     NULL,
     "GET\n/\nParam1=value1&Param1=value2\nhost:example.amazonaws.com\nx-amz-date:" DATE
     "\n\nhost;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\nc968629d70850097a2d8781c9bf7edcb988b04cac14cca9be4acc3595f884606",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=host;x-amz-date, "
     "Signature=5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"},
    {"get-vanilla-empty-query-key",
     "GET",
     "/",
     "Param1=value1",
     {"Host:example.amazonaws.com", "X-Amz-Date:" DATE},
     NULL,
     "GET\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:" DATE
     "\n\nhost;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\n1e24db194ed7d0eec2de28d7369675a243488e08526e8c1c73571282f7c517ab",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=host;x-amz-date, "
     "Signature=a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
    {"get-vanilla-query-unreserved",
     "GET",
     "/",
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
     {"Host:example.amazonaws.com", "X-Amz-Date:" DATE},
     NULL,
     "GET\n/\n-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n"
     "host:example.amazonaws.com\nx-amz-date:" DATE "\n\nhost;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\nc30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=host;x-amz-date, "
     "Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"},
    {"get-vanilla-utf8-query",
     "GET",
     "/",
     "\xe1\x88\xb4=bar",
     {"Host:example.amazonaws.com", "X-Amz-Date:" DATE},
     NULL,
     "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\nx-amz-date:" DATE
     "\n\nhost;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\neb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=host;x-amz-date, "
     "Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
    {"get-unreserved",
     "GET",
     "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
     NULL,
     {"Host:example.amazonaws.com", "X-Amz-Date:" DATE},
     NULL,
     "GET\n/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n\n"
     "host:example.amazonaws.com\nx-amz-date:" DATE "\n\nhost;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\n6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=host;x-amz-date, "
     "Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
    {"get-header-value-trim",
     "GET",
     "/",
     NULL,
     {"Host:example.amazonaws.com", "My-Header1: value1", "My-Header2: \"a   b   c\"",
      "X-Amz-Date:" DATE},
     NULL,
     "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\n"
     "x-amz-date:" DATE "\n\nhost;my-header1;my-header2;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\na726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE
     ", SignedHeaders=host;my-header1;my-header2;x-amz-date, "
     "Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
    {"get-header-key-duplicate",
     "GET",
     "/",
     NULL,
     {"Host:example.amazonaws.com", "My-Header1:value2", "My-Header1:value2", "My-Header1:value1",
      "X-Amz-Date:" DATE},
     NULL,
     "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:" DATE
     "\n\nhost;my-header1;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\ndc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=host;my-header1;x-amz-date, "
     "Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
    {"get-header-value-order",
     "GET",
     "/",
     NULL,
     {"Host:example.amazonaws.com", "My-Header1:value4", "My-Header1:value1", "My-Header1:value3",
      "My-Header1:value2", "X-Amz-Date:" DATE},
     NULL,
     "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value4,value1,value3,value2\n"
     "x-amz-date:" DATE "\n\nhost;my-header1;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\n31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=host;my-header1;x-amz-date, "
     "Signature=08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"},
    {"post-header-key-sort",
     "POST",
     "/",
     NULL,
     {"Host:example.amazonaws.com", "My-Header1:value1", "X-Amz-Date:" DATE},
     NULL,
     "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nx-amz-date:" DATE
     "\n\nhost;my-header1;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\n9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=host;my-header1;x-amz-date, "
     "Signature=c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"},
    {"post-header-value-case",
     "POST",
     "/",
     NULL,
     {"Host:example.amazonaws.com", "My-Header1:VALUE1", "X-Amz-Date:" DATE},
     NULL,
     "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\nx-amz-date:" DATE
     "\n\nhost;my-header1;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\nd51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a64618606a93",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=host;my-header1;x-amz-date, "
     "Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"},
    {"post-vanilla",
     "POST",
     "/",
     NULL,
     {"Host:example.amazonaws.com", "X-Amz-Date:" DATE},
     NULL,
     "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:" DATE "\n\nhost;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\n553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=host;x-amz-date, "
     "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-vanilla-query",
     "POST",
     "/",
     "Param1=value1",
     {"Host:example.amazonaws.com", "X-Amz-Date:" DATE},
     NULL,
     "POST\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:" DATE
     "\n\nhost;x-amz-date\n" EMPTY_HASH,
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\n9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=host;x-amz-date, "
     "Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
    /* The form-body cases are how every EC2 call is signed. */
    {"post-x-www-form-urlencoded",
     "POST",
     "/",
     NULL,
     {"Content-Type:application/x-www-form-urlencoded", "Host:example.amazonaws.com",
      "X-Amz-Date:" DATE},
     "Param1=value1",
     "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n"
     "x-amz-date:" DATE "\n\ncontent-type;host;x-amz-date\n"
     "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\n42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE
     ", SignedHeaders=content-type;host;x-amz-date, "
     "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
    {"post-x-www-form-urlencoded-parameters",
     "POST",
     "/",
     NULL,
     {"Content-Type:application/x-www-form-urlencoded; charset=utf8", "Host:example.amazonaws.com",
      "X-Amz-Date:" DATE},
     "Param1=value1",
     "POST\n/\n\ncontent-type:application/x-www-form-urlencoded; charset=utf8\n"
     "host:example.amazonaws.com\nx-amz-date:" DATE "\n\ncontent-type;host;x-amz-date\n"
     "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
     "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
     "\n2e1cf7ed91881a30569e46552437e4156c823447bf1781b921b5d486c568dd1c",
     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE
     ", SignedHeaders=content-type;host;x-amz-date, "
     "Signature=1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe"},
};

static void sign_vector(const vector_t *v, kite__aws_sig_t *sig) {
  size_t n = 0;
  while (n < 8 && v->headers[n])
    n++;
  kite__aws_sig_req_t r = {.method = v->method,
                           .path = v->path,
                           .query = v->query,
                           .headers = v->headers,
                           .header_n = n,
                           .payload = v->body,
                           .payload_len = v->body ? strlen(v->body) : 0,
                           .region = "us-east-1",
                           .service = "service",
                           .amz_date = DATE,
                           .access_key = AK,
                           .secret_key = SK};
  assert_int_equal(kite__aws_sign(&r, sig), 0);
}

static void test_published_vectors(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
    const vector_t *v = &vectors[i];
    kite__aws_sig_t sig;
    sign_vector(v, &sig);
    if (strcmp(sig.canonical_request, v->creq) != 0)
      fail_msg("%s: canonical request\n%s\n--- expected ---\n%s", v->name, sig.canonical_request,
               v->creq);
    if (v->sts && strcmp(sig.string_to_sign, v->sts) != 0)
      fail_msg("%s: string to sign\n%s\n--- expected ---\n%s", v->name, sig.string_to_sign, v->sts);
    if (strcmp(sig.authorization, v->authz) != 0)
      fail_msg("%s: authorization\n%s\n--- expected ---\n%s", v->name, sig.authorization, v->authz);
    kite__aws_sig_free(&sig);
  }
}

/* A different secret, region or body gives a different signature: the check can fail. */
static void test_inputs_change_signature(void **state) {
  (void)state;
  const char *h[] = {"Host:example.amazonaws.com", "X-Amz-Date:" DATE};
  kite__aws_sig_req_t r = {.method = "GET",
                           .path = "/",
                           .headers = h,
                           .header_n = 2,
                           .region = "us-east-1",
                           .service = "service",
                           .amz_date = DATE,
                           .access_key = AK,
                           .secret_key = SK};
  kite__aws_sig_t a, b;
  assert_int_equal(kite__aws_sign(&r, &a), 0);
  r.secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ";
  assert_int_equal(kite__aws_sign(&r, &b), 0);
  assert_string_not_equal(a.signature, b.signature);
  kite__aws_sig_free(&b);
  r.secret_key = SK;
  r.region = "eu-west-1";
  assert_int_equal(kite__aws_sign(&r, &b), 0);
  assert_string_not_equal(a.signature, b.signature);
  kite__aws_sig_free(&b);
  r.region = "us-east-1";
  r.payload = "x";
  r.payload_len = 1;
  assert_int_equal(kite__aws_sign(&r, &b), 0);
  assert_string_not_equal(a.signature, b.signature);
  kite__aws_sig_free(&b);
  kite__aws_sig_free(&a);
}

static void test_path_normalization(void **state) {
  (void)state;
  static const struct {
    const char *in, *out;
  } cases[] = {{"/", "/"},
               {"", "/"},
               {"//", "/"},
               {"/example/..", "/"},
               {"/example/./", "/example/"},
               {"/example space/", "/example%20space/"},
               {"/a//b", "/a/b"},
               {"/a/b/../c", "/a/c"},
               {"/\xe1\x88\xb4", "/%E1%88%B4"}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *h[] = {"Host:h"};
    kite__aws_sig_req_t r = {.method = "GET",
                             .path = cases[i].in,
                             .headers = h,
                             .header_n = 1,
                             .region = "r",
                             .service = "s",
                             .amz_date = DATE,
                             .access_key = AK,
                             .secret_key = SK};
    kite__aws_sig_t s;
    assert_int_equal(kite__aws_sign(&r, &s), 0);
    char want[128];
    snprintf(want, sizeof(want), "GET\n%s\n", cases[i].out);
    if (strncmp(s.canonical_request, want, strlen(want)) != 0)
      fail_msg("path \"%s\": got %s, want %s", cases[i].in, s.canonical_request, want);
    kite__aws_sig_free(&s);
  }
}

static void test_bad_input_refused(void **state) {
  (void)state;
  const char *h[] = {"no colon here"};
  kite__aws_sig_req_t r = {.method = "GET",
                           .path = "/",
                           .headers = h,
                           .header_n = 1,
                           .region = "r",
                           .service = "s",
                           .amz_date = DATE,
                           .access_key = AK,
                           .secret_key = SK};
  kite__aws_sig_t s;
  assert_int_equal(kite__aws_sign(&r, &s), KITE_EINVAL);
  r.header_n = 0;
  r.amz_date = "2015";
  assert_int_equal(kite__aws_sign(&r, &s), KITE_EINVAL);
}

static void test_form_and_token(void **state) {
  (void)state;
  kite__aws_form_t f;
  kite__aws_form_init(&f, "DescribeInstances");
  kite__aws_form_addf(&f, "tag:kite-pool", "Filter.%u.Name", 1u);
  kite__aws_form_addf(&f, "a b&c=d/~", "Filter.%u.Value.%u", 1u, 1u);
  assert_int_equal(f.error, 0);
  assert_string_equal(f.buf, "Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag%3Akite-"
                             "pool&Filter.1.Value.1=a%20b%26c%3Dd%2F~");
  kite__aws_form_free(&f);
  char a[48], b[48], c[48];
  kite__aws_client_token("kite-pool-x-0-0-123-abc", a);
  kite__aws_client_token("kite-pool-x-0-0-123-abc", b);
  kite__aws_client_token("kite-pool-x-1-0-123-abc", c);
  assert_string_equal(a, b);
  assert_string_not_equal(a, c);
  assert_true(strlen(a) <= 64);
}

static void test_error_advice(void **state) {
  (void)state;
  int k = 0;
  assert_non_null(kite__aws_error_advice("AuthFailure", &k));
  assert_int_equal(k, KITE_ECREDENTIALS);
  assert_non_null(kite__aws_error_advice("InsufficientInstanceCapacity", &k));
  assert_int_equal(k, KITE_ECAPACITY);
  assert_non_null(kite__aws_error_advice("InsufficientCapacity", &k));
  assert_int_equal(k, KITE_ECAPACITY);
  /* Quotas, price and what is not sold there are told apart, for failover to choose. */
  const char *quota[] = {"InstanceLimitExceeded", "VcpuLimitExceeded",
                         "MaxSpotInstanceCountExceeded"};
  for (size_t i = 0; i < 3; i++) {
    assert_non_null(kite__aws_error_advice(quota[i], &k));
    assert_int_equal(k, KITE_EQUOTA);
  }
  assert_non_null(kite__aws_error_advice("SpotMaxPriceTooLow", &k));
  assert_int_equal(k, KITE_EPRICE);
  assert_non_null(kite__aws_error_advice("Unsupported", &k));
  assert_int_equal(k, KITE_EUNAVAILABLE);
  /* The Price List's JSON error types. */
  assert_non_null(kite__aws_error_advice("InvalidSignatureException", &k));
  assert_int_equal(k, KITE_ECREDENTIALS);
  assert_true(kite__aws_error_transient("ThrottlingException"));
  assert_non_null(kite__aws_error_advice("UnauthorizedOperation", &k));
  assert_int_equal(k, KITE_ECREDENTIALS);
  assert_non_null(kite__aws_error_advice("InvalidAMIID.NotFound", &k));
  assert_int_equal(k, KITE_EPROVIDER);
  assert_null(kite__aws_error_advice("SomethingNew", &k));
  assert_int_equal(k, KITE_EPROVIDER);
  assert_true(kite__aws_error_transient("RequestLimitExceeded"));
  assert_false(kite__aws_error_transient("AuthFailure"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_published_vectors),  cmocka_unit_test(test_inputs_change_signature),
      cmocka_unit_test(test_path_normalization), cmocka_unit_test(test_bad_input_refused),
      cmocka_unit_test(test_form_and_token),     cmocka_unit_test(test_error_advice),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
