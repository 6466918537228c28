/* The service-account JWT of the Compute Engine provider (providers/gcp/auth.c): its signature
 * equals the one `openssl dgst -sha256 -sign` computes over the same signing input with the same
 * key (RS256 with PKCS #1 v1.5 is deterministic), its header and claims are what Google's token
 * endpoint reads, and a key that is not one is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kite/kite.h"
#include "providers/gcp/gcp_impl.h"

static char dir[64];

static char *slurp(const char *path) {
  FILE *fp = fopen(path, "rb");
  assert_non_null(fp);
  static char buf[16384];
  size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
  fclose(fp);
  char *out = malloc(n + 1);
  memcpy(out, buf, n);
  out[n] = '\0';
  return out;
}

static void test_signature_matches_openssl(void **state) {
  (void)state;
  char cmd[512], key[128], input[128], sig[128];
  snprintf(key, sizeof(key), "%s/key.pem", dir);
  snprintf(cmd, sizeof(cmd),
           "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null", key);
  assert_int_equal(system(cmd), 0);
  char *pem = slurp(key), *jwt = NULL, *msg = NULL;
  assert_int_equal(kite__gcp_jwt("kite@p.iam.gserviceaccount.com", pem, "kid-1",
                                 "https://oauth2.googleapis.com/token", KITE_GCP_SCOPE, 1700000000,
                                 &jwt, &msg),
                   0);
  char *last = strrchr(jwt, '.');
  assert_non_null(last);
  snprintf(input, sizeof(input), "%s/input", dir);
  FILE *fp = fopen(input, "wb");
  fwrite(jwt, 1, (size_t)(last - jwt), fp);
  fclose(fp);
  snprintf(sig, sizeof(sig), "%s/sig", dir);
  snprintf(cmd, sizeof(cmd), "openssl dgst -sha256 -sign %s -out %s %s", key, sig, input);
  assert_int_equal(system(cmd), 0);
  char *raw = slurp(sig);
  FILE *sp = fopen(sig, "rb");
  fseek(sp, 0, SEEK_END);
  long sl = ftell(sp);
  fclose(sp);
  char *b64 = kite__gcp_b64url(raw, (size_t)sl);
  assert_string_equal(last + 1, b64);
  /* The header and the claims, as the token endpoint reads them. */
  char *dot = strchr(jwt, '.');
  const char *header = "{\"alg\":\"RS256\",\"kid\":\"kid-1\",\"typ\":\"JWT\"}";
  char *h64 = kite__gcp_b64url(header, strlen(header));
  assert_int_equal((size_t)(dot - jwt), strlen(h64));
  assert_int_equal(strncmp(jwt, h64, strlen(h64)), 0);
  free(h64);
  const char *claims = "{\"aud\":\"https://oauth2.googleapis.com/token\",\"exp\":1700003600,"
                       "\"iat\":1700000000,\"iss\":\"kite@p.iam.gserviceaccount.com\",\"scope\":"
                       "\"https://www.googleapis.com/auth/cloud-platform\"}";
  char *c64 = kite__gcp_b64url(claims, strlen(claims));
  assert_int_equal(strncmp(dot + 1, c64, strlen(c64)), 0);
  free(c64);
  free(b64);
  free(raw);
  free(pem);
  free(jwt);
}

static void test_not_a_key_is_refused(void **state) {
  (void)state;
  char *jwt = NULL, *msg = NULL;
  assert_int_equal(kite__gcp_jwt("a@b",
                                 "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE "
                                 "KEY-----\n",
                                 NULL, "https://x/token", KITE_GCP_SCOPE, 1, &jwt, &msg),
                   KITE_ECREDENTIALS);
  assert_null(jwt);
  assert_non_null(strstr(msg, "not a PEM RSA private key"));
  free(msg);
}

static void test_b64url(void **state) {
  (void)state;
  char *s = kite__gcp_b64url("\xfb\xff\xfe", 3);
  assert_string_equal(s, "-__-");
  free(s);
  s = kite__gcp_b64url("a", 1);
  assert_string_equal(s, "YQ");
  free(s);
}

int main(void) {
  snprintf(dir, sizeof(dir), "/tmp/kite-test-jwt-XXXXXX");
  assert_non_null(mkdtemp(dir));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_signature_matches_openssl),
      cmocka_unit_test(test_not_a_key_is_refused),
      cmocka_unit_test(test_b64url),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0)
    rc = 1;
  return rc;
}
