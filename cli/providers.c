/* `kite providers`: what the registry knows — every provider, what it can do, which spec keys
 * it honours, and its options. --markdown prints the README's tables, so the README shows what
 * the registry says (tests/cli/test_providers.sh compares them). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "kite/registry.h"

static const struct {
  kite_spec_field_t field;
  const char *key;
} fields[] = {
    {KITE_FIELD_REGION, "`region`"},
    {KITE_FIELD_IMAGE, "`image`"},
    {KITE_FIELD_INSTANCE_TYPE, "`resources.instance_type`"},
    {KITE_FIELD_SPOT, "`resources.spot: true`"},
    {KITE_FIELD_CPUS, "`resources.cpus`"},
    {KITE_FIELD_MEMORY, "`resources.memory`"},
    {KITE_FIELD_ACCELERATORS, "`resources.accelerators`"},
    {KITE_FIELD_DISK_GB, "`resources.disk_gb`"},
    {KITE_FIELD_SSH_USER, "`ssh.user`"},
    {KITE_FIELD_SSH_KEY, "`ssh.key`"},
    {KITE_FIELD_DEADMAN, "`deadman` (on)"},
    {KITE_FIELD_APT, "`bootstrap.apt`"},
};

static const char *type_word(kite_option_type_t t) {
  switch (t) {
  case KITE_OPTION_STRING:
    return "string";
  case KITE_OPTION_INTEGER:
    return "integer";
  case KITE_OPTION_NUMBER:
    return "number";
  case KITE_OPTION_BOOLEAN:
    return "boolean";
  case KITE_OPTION_STRINGS:
    return "list of strings";
  case KITE_OPTION_KEY_FILE:
    return "key file";
  case KITE_OPTION_URL:
    return "URL";
  case KITE_OPTION_SECRET:
    return "secret";
  default:
    return "value";
  }
}

static void regions(const kite_provider_info_t *p, FILE *fp) {
  if (!kite_registry_can(p, KITE_FIELD_REGION)) {
    fputs("-", fp);
    return;
  }
  if (p->regions == NULL) {
    fputs("any its API knows", fp);
    return;
  }
  for (size_t i = 0; p->regions[i]; i++)
    fprintf(fp, "%s%s", i ? ", " : "", p->regions[i]);
}

static const char *deadman(const kite_provider_info_t *p) {
  if (!kite_registry_can(p, KITE_FIELD_DEADMAN))
    return "never (refused)";
  return p->deadman_still_billed ? "powers off; still billed until deleted"
                                 : "powers off; ends the bill";
}

/* How a running instance is paid for, in words. */
static const char *billing(const kite_provider_info_t *p, char *out, size_t size) {
  unsigned inc = p->billing_increment_s, min = p->billing_minimum_s;
  if (p->user_machines || p->host_processes)
    snprintf(out, size, "not billed");
  else if (inc <= 1 && min > 1)
    snprintf(out, size, "per second, %u s minimum", min);
  else if (inc <= 1)
    snprintf(out, size, "per second");
  else if (inc == 3600 && min <= inc)
    snprintf(out, size, "per hour begun");
  else if (min > inc)
    snprintf(out, size, "per %u s begun, %u s minimum", inc, min);
  else
    snprintf(out, size, "per %u s begun", inc);
  return out;
}

static void markdown(FILE *fp) {
  const kite_provider_info_t *p;
  fputs(
      "| provider | cloud | spot | catalog | billing | one create makes | stop/start | dead-man's "
      "switch | regions |\n"
      "|----------|-------|------|---------|---------|------------------|------------|-----------"
      "--------|---------|\n",
      fp);
  char bill[64];
  for (size_t i = 0; (p = kite_registry_at(i)) != NULL; i++) {
    fprintf(fp, "| `%s` | %s | %s | %s | %s | %u | %s | ", p->name, p->title,
            kite_registry_can(p, KITE_FIELD_SPOT) ? "yes" : "no", p->catalog ? "yes" : "no",
            billing(p, bill, sizeof(bill)), p->batch_max ? p->batch_max : 1,
            p->stop_start ? "yes" : "no");
    fprintf(fp, "%s | ", deadman(p));
    regions(p, fp);
    fputs(" |\n", fp);
  }
  fputs("\n| key |", fp);
  for (size_t i = 0; (p = kite_registry_at(i)) != NULL; i++)
    fprintf(fp, " %s |", p->name);
  fputs("\n|-----|", fp);
  for (size_t i = 0; kite_registry_at(i) != NULL; i++)
    fputs("---|", fp);
  fputc('\n', fp);
  for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
    fprintf(fp, "| %s |", fields[f].key);
    for (size_t i = 0; (p = kite_registry_at(i)) != NULL; i++)
      fprintf(fp, " %s |", kite_registry_can(p, fields[f].field) ? "yes" : "refused");
    fputc('\n', fp);
  }
  fputs("\n| provider | `provider_options` |\n|----------|--------------------|\n", fp);
  for (size_t i = 0; (p = kite_registry_at(i)) != NULL; i++) {
    fprintf(fp, "| `%s` |", p->name);
    for (size_t k = 0; k < p->n_options; k++)
      fprintf(fp, "%s `%s` (%s)", k ? "," : "", p->options[k].name, type_word(p->options[k].type));
    fputs(" |\n", fp);
  }
}

static void plain(FILE *fp) {
  const kite_provider_info_t *p;
  char bill[64];
  for (size_t i = 0; (p = kite_registry_at(i)) != NULL; i++) {
    fprintf(fp, "%s%s (%s)%s\n", i ? "\n" : "", p->name, p->title, i == 0 ? " — the default" : "");
    fprintf(fp, "  catalog of offers and prices: %s; billing: %s\n",
            p->catalog ? "yes" : "no (name the instance type)", billing(p, bill, sizeof(bill)));
    fprintf(fp, "  spot: %s; one create makes %u; stop/start: %s; regions: ",
            kite_registry_can(p, KITE_FIELD_SPOT) ? "yes" : "no", p->batch_max ? p->batch_max : 1,
            p->stop_start ? "yes" : "no");
    regions(p, fp);
    fprintf(fp, "\n  dead-man's switch: %s%s%s\n", deadman(p), p->deadman_still_billed ? ": " : "",
            p->deadman_still_billed ? p->deadman_still_billed : "");
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
      if (!kite_registry_can(p, fields[f].field))
        fprintf(fp, "  refuses %s: %s\n", fields[f].key, p->refused[fields[f].field]);
    for (size_t k = 0; k < p->n_options; k++)
      fprintf(fp, "  option %s (%s): %s\n", p->options[k].name, type_word(p->options[k].type),
              p->options[k].meaning);
  }
}

int cli_cmd_providers(int argc, char **argv) {
  bool md = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for("providers", stdout);
      return 0;
    }
    if (strcmp(argv[i], "--markdown") == 0)
      md = true;
    else
      return cli_usage("providers", "unknown argument %s", argv[i]);
  }
  if (md)
    markdown(stdout);
  else
    plain(stdout);
  return 0;
}
