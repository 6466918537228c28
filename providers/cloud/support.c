/* Small pieces every cloud provider's API code uses: option and reach-record JSON, account
 * names, key fingerprints, escaping. No state. */
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>

#include "cloud.h"
#include "kite_impl.h"

const char *kite_cloud_first(const char *a, const char *b, const char *c) {
  if (a && *a)
    return a;
  if (b && *b)
    return b;
  return c && *c ? c : NULL;
}

json_t *kite_cloud_options_json(const kite_cloud_ops_t *ops, const char *options, char **msg) {
  if (options == NULL || *options == '\0')
    return json_object();
  json_error_t jerr;
  json_t *o = json_loads(options, 0, &jerr);
  if (!json_is_object(o)) {
    json_decref(o);
    *msg = kite__sprintf("%s: the provider options are not a JSON object (%s); write them as "
                         "{\"key\": value, ...}",
                         ops->name, jerr.text);
    return NULL;
  }
  return o;
}

char *kite_cloud_reach_json(const char *provider, ...) {
  json_t *j = json_pack("{s:s}", "provider", provider);
  va_list ap;
  va_start(ap, provider);
  for (const char *k; j && (k = va_arg(ap, const char *)) != NULL;) {
    const char *v = va_arg(ap, const char *);
    if (v)
      json_object_set_new(j, k, json_string(v));
  }
  va_end(ap);
  char *text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(j);
  return text;
}

char *kite_cloud_md5_fingerprint(const char *pub) {
  const char *sp = pub ? strchr(pub, ' ') : NULL;
  if (sp == NULL)
    return NULL;
  const char *b64 = sp + 1;
  size_t n = strcspn(b64, " \r\n");
  if (n == 0 || n % 4)
    return NULL;
  unsigned char *blob = malloc(n);
  if (blob == NULL)
    return NULL;
  int len = EVP_DecodeBlock(blob, (const unsigned char *)b64, (int)n);
  for (size_t k = n; len > 0 && k > 0 && b64[k - 1] == '='; k--)
    len--;
  char *out = NULL;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  if (len > 0 && EVP_Digest(blob, (size_t)len, md, &mdlen, EVP_md5(), NULL) == 1) {
    out = calloc(mdlen * 3 + 1, 1);
    for (unsigned i = 0; out && i < mdlen; i++)
      snprintf(out + i * 3, 4, i + 1 < mdlen ? "%02x:" : "%02x", md[i]);
  }
  free(blob);
  return out;
}

char *kite_cloud_escape(const char *s) {
  CURL *e = curl_easy_init();
  char *t = e ? curl_easy_escape(e, s ? s : "", 0) : NULL;
  char *out = kite__strdup(t);
  curl_free(t);
  if (e)
    curl_easy_cleanup(e);
  return out;
}
