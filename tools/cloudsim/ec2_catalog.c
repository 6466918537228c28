/* What the emulated EC2 sells: a table of instance types with their public on-demand prices in
 * us-east-1 and eu-west-1 (Linux, shared tenancy, USD per hour, as AWS's price pages list them)
 * and spot prices per availability zone; the EC2 actions that read it (DescribeInstanceTypes,
 * DescribeSpotPriceHistory, in EC2's XML), the checks RunInstances makes of a type and a zone,
 * and the price a launch is billed at. The Pricing front (pricing_api.c) answers GetProducts
 * from the same table.
 *
 *   GET  /_sim/ec2/catalog    the table as JSON, per region: types, their shapes, on-demand
 *                             price (null: not in the Price List) and spot price per zone
 *   POST /_sim/ec2/catalog    {"page_max": N}: no page of the three catalog calls holds more
 *                             than N items (0: what the call asks)
 *   POST /_sim/ec2/override   {"action": A, "status": S, "body": B, "times": N}: the next N
 *                             calls (default 1) of action A (an EC2 action or a Pricing one,
 *                             "GetProducts") are answered with status S and body B as they are;
 *                             {"clear": true} drops every such answer
 *
 * Oddities kept on purpose, as EC2 has them: p3.2xlarge has no spot price history in
 * us-east-1, p4d.24xlarge is offered in only some zones, and m6a.large is sold in us-east-1
 * but missing from its Price List. Spot prices are a fixed fraction of the on-demand price,
 * a little higher in each later zone; DescribeSpotPriceHistory also returns an older entry
 * per zone (without StartTime) and Windows prices, which a reader must tell apart. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ec2_impl.h"

typedef struct where {
  const char *region;
  double price;           /* on demand, USD per hour */
  bool unlisted;          /* sold, but the Price List has no product for it */
  const char *zones;      /* the zone letters it is offered in */
  const char *spot_zones; /* the zone letters with spot price history */
} where_t;

typedef struct itype {
  const char *name;
  unsigned vcpus;
  unsigned memory_mib;
  const char *arch;
  const char *gpu; /* NULL: none */
  unsigned gpu_count, gpu_mib;
  unsigned disk_gb;  /* instance store; 0: EBS only */
  double spot_ratio; /* spot price over on-demand in the first zone */
  where_t at[2];
} itype_t;

#define US "us-east-1"
#define EU "eu-west-1"

static const itype_t types[] = {
    {"t3.micro",
     2,
     1024,
     "x86_64",
     NULL,
     0,
     0,
     0,
     0.30,
     {{US, 0.0104, false, "abcdf", "abcdf"}, {EU, 0.0114, false, "abc", "abc"}}},
    {"t3.medium",
     2,
     4096,
     "x86_64",
     NULL,
     0,
     0,
     0,
     0.31,
     {{US, 0.0416, false, "abcdf", "abcdf"}, {EU, 0.0456, false, "abc", "abc"}}},
    {"m5.large",
     2,
     8192,
     "x86_64",
     NULL,
     0,
     0,
     0,
     0.40,
     {{US, 0.096, false, "abcdef", "abcdef"}, {EU, 0.107, false, "abc", "abc"}}},
    {"m5.xlarge",
     4,
     16384,
     "x86_64",
     NULL,
     0,
     0,
     0,
     0.41,
     {{US, 0.192, false, "abcdef", "abcdef"}, {EU, 0.214, false, "abc", "abc"}}},
    {"c5.2xlarge",
     8,
     16384,
     "x86_64",
     NULL,
     0,
     0,
     0,
     0.38,
     {{US, 0.34, false, "abcdef", "abcdef"}, {EU, 0.384, false, "abc", "abc"}}},
    {"r5.large",
     2,
     16384,
     "x86_64",
     NULL,
     0,
     0,
     0,
     0.33,
     {{US, 0.126, false, "abcdef", "abcdef"}, {EU, 0.141, false, "abc", "abc"}}},
    {"c6i.large",
     2,
     4096,
     "x86_64",
     NULL,
     0,
     0,
     0,
     0.39,
     {{US, 0.085, false, "abcdf", "abcdf"}, {EU, 0.096, false, "abc", "abc"}}},
    {"m6a.large",
     2,
     8192,
     "x86_64",
     NULL,
     0,
     0,
     0,
     0.36,
     {{US, 0.0864, true, "abcdf", "abcdf"}, {EU, 0.0972, false, "abc", "abc"}}},
    {"m7g.large",
     2,
     8192,
     "arm64",
     NULL,
     0,
     0,
     0,
     0.42,
     {{US, 0.0816, false, "abcdf", "abcdf"}, {EU, 0.0892, false, "abc", "abc"}}},
    {"g4dn.xlarge",
     4,
     16384,
     "x86_64",
     "T4",
     1,
     16384,
     125,
     0.30,
     {{US, 0.526, false, "abcdf", "abcdf"}, {EU, 0.587, false, "abc", "abc"}}},
    {"g5.xlarge",
     4,
     16384,
     "x86_64",
     "A10G",
     1,
     24576,
     250,
     0.34,
     {{US, 1.006, false, "abcdf", "abcdf"}, {EU, 1.123, false, "abc", "abc"}}},
    {"p3.2xlarge",
     8,
     62464,
     "x86_64",
     "V100",
     1,
     16384,
     0,
     0.32,
     {{US, 3.06, false, "abcdf", ""}, {EU, 3.305, false, "abc", "abc"}}},
    {"p4d.24xlarge",
     96,
     1179648,
     "x86_64",
     "A100",
     8,
     40960,
     8000,
     0.45,
     {{US, 32.7726, false, "bc", "bc"}, {EU, 35.3928, false, "ac", "ac"}}},
};

static const struct {
  const char *region, *zones, *location;
} regions[] = {{US, "abcdef", "US East (N. Virginia)"}, {EU, "abc", "EU (Ireland)"}};

/* ---- the table ------------------------------------------------------------------------------ */

static const where_t *where(const itype_t *t, const char *region) {
  for (size_t i = 0; region && i < 2; i++)
    if (strcmp(t->at[i].region, region) == 0)
      return &t->at[i];
  return NULL;
}

static const itype_t *type_find(const char *name) {
  for (size_t i = 0; name && i < sizeof(types) / sizeof(types[0]); i++)
    if (strcmp(types[i].name, name) == 0)
      return &types[i];
  return NULL;
}

/* The zone's letter when zone is one of region's ("us-east-1c"), else 0. */
static char zone_letter(const char *region, const char *zone) {
  size_t n = strlen(region);
  if (zone == NULL || strncmp(zone, region, n) != 0 || strlen(zone) != n + 1)
    return 0;
  for (size_t i = 0; i < sizeof(regions) / sizeof(regions[0]); i++)
    if (strcmp(regions[i].region, region) == 0 && strchr(regions[i].zones, zone[n]))
      return zone[n];
  return 0;
}

static double spot_in(const itype_t *t, const where_t *w, char letter) {
  const char *p = strchr(w->spot_zones, letter);
  if (p == NULL || letter == 0)
    return -1;
  double v = w->price * t->spot_ratio * (1.0 + 0.06 * (double)(letter - 'a'));
  return round(v * 10000.0) / 10000.0;
}

bool ec2_type_exists(const char *type) {
  return type_find(type) != NULL;
}

bool ec2_type_sold(const char *type, const char *region) {
  const itype_t *t = type_find(type);
  return t && where(t, region);
}

const char *ec2_zone_default(const char *type, const char *region) {
  const itype_t *t = type_find(type);
  const where_t *w = t ? where(t, region) : NULL;
  static char zone[64];
  snprintf(zone, sizeof(zone), "%s%c", region, w ? w->zones[0] : 'a');
  return zone;
}

bool ec2_zone_valid(const char *region, const char *zone) {
  return zone_letter(region, zone) != 0;
}

bool ec2_type_offered(const char *type, const char *region, const char *zone) {
  const itype_t *t = type_find(type);
  const where_t *w = t ? where(t, region) : NULL;
  char z = zone_letter(region, zone);
  return w && z && strchr(w->zones, z);
}

double ec2_type_price(const char *type, const char *region, const char *zone, bool spot) {
  const itype_t *t = type_find(type);
  const where_t *w = t ? where(t, region) : NULL;
  if (w == NULL)
    return 0;
  double s = spot ? spot_in(t, w, zone_letter(region, zone)) : -1;
  return s >= 0 ? s : w->price;
}

const char *ec2_type_zones(const char *type, const char *region, char *out, size_t size) {
  const itype_t *t = type_find(type);
  const where_t *w = t ? where(t, region) : NULL;
  size_t o = 0;
  out[0] = '\0';
  for (const char *z = w ? w->zones : ""; *z && o + 16 < size; z++)
    o += (size_t)snprintf(out + o, size - o, "%s%s%c", o ? ", " : "", region, *z);
  return out;
}

/* ---- paging --------------------------------------------------------------------------------- */

static unsigned page_max;

/* Reads MaxResults (lo..hi; absent: hi) and NextToken; false with EC2's refusal in resp. */
static bool paging(const ec2_form_t *f, long lo, long hi, long *max, long *skip,
                   http_resp_t *resp) {
  const char *mr = ec2_param(f, "MaxResults"), *nt = ec2_param(f, "NextToken");
  char *end = NULL;
  *max = mr ? strtol(mr, &end, 10) : hi;
  if (mr && (*end != '\0' || *max < lo || *max > hi)) {
    ec2_error(resp, 400, "InvalidParameterValue",
              "Value ( %s ) for parameter maxResults is invalid. Expecting a value between %ld "
              "and %ld.",
              mr, lo, hi);
    return false;
  }
  if (*max == 0)
    *max = hi;
  if (page_max && *max > (long)page_max)
    *max = page_max;
  *skip = 0;
  if (nt && (sscanf(nt, "kite-page-%ld", skip) != 1 || *skip < 0)) {
    ec2_error(resp, 400, "InvalidParameterValue", "Invalid value '%s' for nextToken", nt);
    return false;
  }
  return true;
}

unsigned ec2_page_max(void) {
  return page_max;
}

/* Whether InstanceType.N names t (or none is named). */
static bool type_asked(const ec2_form_t *f, const char *name) {
  if (ec2_param(f, "InstanceType.1") == NULL)
    return true;
  for (unsigned i = 1; ec2_paramf(f, "InstanceType.%u", i); i++)
    if (strcmp(ec2_paramf(f, "InstanceType.%u", i), name) == 0)
      return true;
  return false;
}

/* ---- DescribeInstanceTypes ------------------------------------------------------------------ */

static void render_type(ec2_out_t *o, const itype_t *t) {
  ec2_outf(o, "<item>");
  ec2_elem(o, "instanceType", t->name);
  ec2_outf(o,
           "<currentGeneration>true</currentGeneration><freeTierEligible>%s"
           "</freeTierEligible>",
           strcmp(t->name, "t3.micro") == 0 ? "true" : "false");
  ec2_outf(o, "<supportedUsageClasses><item>on-demand</item>%s</supportedUsageClasses>",
           t->spot_ratio > 0 ? "<item>spot</item>" : "");
  ec2_outf(o, "<supportedRootDeviceTypes><item>ebs</item></supportedRootDeviceTypes>"
              "<supportedVirtualizationTypes><item>hvm</item></supportedVirtualizationTypes>"
              "<bareMetal>false</bareMetal><hypervisor>nitro</hypervisor>");
  ec2_outf(o,
           "<processorInfo><supportedArchitectures><item>%s</item></supportedArchitectures>"
           "<sustainedClockSpeedInGhz>3.1</sustainedClockSpeedInGhz></processorInfo>",
           t->arch);
  ec2_outf(o,
           "<vCpuInfo><defaultVCpus>%u</defaultVCpus><defaultCores>%u</defaultCores>"
           "<defaultThreadsPerCore>%u</defaultThreadsPerCore></vCpuInfo>",
           t->vcpus, t->vcpus > 1 ? t->vcpus / 2 : 1, t->vcpus > 1 ? 2 : 1);
  ec2_outf(o, "<memoryInfo><sizeInMiB>%u</sizeInMiB></memoryInfo>", t->memory_mib);
  ec2_outf(o, "<instanceStorageSupported>%s</instanceStorageSupported>",
           t->disk_gb ? "true" : "false");
  if (t->disk_gb)
    ec2_outf(o,
             "<instanceStorageInfo><totalSizeInGB>%u</totalSizeInGB><disks><item><sizeInGB>%u"
             "</sizeInGB><count>1</count><type>ssd</type></item></disks><nvmeSupport>required"
             "</nvmeSupport></instanceStorageInfo>",
             t->disk_gb, t->disk_gb);
  ec2_outf(o, "<ebsInfo><ebsOptimizedSupport>default</ebsOptimizedSupport></ebsInfo>");
  if (t->gpu)
    ec2_outf(o,
             "<gpuInfo><gpus><item><name>%s</name><manufacturer>NVIDIA</manufacturer><count>%u"
             "</count><memoryInfo><sizeInMiB>%u</sizeInMiB></memoryInfo></item></gpus>"
             "<totalGpuMemoryInMiB>%u</totalGpuMemoryInMiB></gpuInfo>",
             t->gpu, t->gpu_count, t->gpu_mib, t->gpu_count * t->gpu_mib);
  ec2_outf(o, "</item>");
}

void ec2_describe_instance_types(const ec2_form_t *f, const char *region, http_resp_t *resp) {
  long max, skip;
  if (!paging(f, 5, 100, &max, &skip, resp))
    return;
  if (ec2_param(f, "Filter.1.Name")) {
    ec2_error(resp, 400, "InvalidParameterValue", "The filter '%s' is not supported here",
              ec2_param(f, "Filter.1.Name"));
    return;
  }
  for (unsigned i = 1; ec2_paramf(f, "InstanceType.%u", i); i++)
    if (!ec2_type_sold(ec2_paramf(f, "InstanceType.%u", i), region)) {
      ec2_error(resp, 400, "InvalidInstanceType",
                "The following supplied instance types do not "
                "exist: [%s]",
                ec2_paramf(f, "InstanceType.%u", i));
      return;
    }
  ec2_out_t o;
  ec2_begin(&o, "DescribeInstanceTypes");
  ec2_outf(&o, "<instanceTypeSet>");
  long seen = 0, shown = 0;
  bool more = false;
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    if (where(&types[i], region) == NULL || !type_asked(f, types[i].name) || seen++ < skip)
      continue;
    if (shown == max) {
      more = true;
      break;
    }
    render_type(&o, &types[i]);
    shown++;
  }
  ec2_outf(&o, "</instanceTypeSet>");
  if (more)
    ec2_outf(&o, "<nextToken>kite-page-%ld</nextToken>", skip + shown);
  ec2_finish(resp, &o, "DescribeInstanceTypes");
}

/* ---- DescribeSpotPriceHistory --------------------------------------------------------------- */

static void stamp(time_t t, char out[32]) {
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

void ec2_describe_spot_price_history(const ec2_form_t *f, const char *region, http_resp_t *resp) {
  long max, skip;
  if (!paging(f, 0, 1000, &max, &skip, resp))
    return;
  bool linux_ = ec2_param(f, "ProductDescription.1") == NULL, windows = linux_;
  for (unsigned i = 1; ec2_paramf(f, "ProductDescription.%u", i); i++) {
    const char *d = ec2_paramf(f, "ProductDescription.%u", i);
    linux_ |= strcmp(d, "Linux/UNIX") == 0;
    windows |= strcmp(d, "Windows") == 0;
  }
  const char *az = ec2_param(f, "AvailabilityZone");
  /* With a StartTime, the price in effect then: the current entry only. */
  bool latest_only = ec2_param(f, "StartTime") != NULL;
  time_t now = time(NULL);
  char current[32], older[32];
  stamp(now - 3600, current);
  stamp(now - 86400, older);
  ec2_out_t o;
  ec2_begin(&o, "DescribeSpotPriceHistory");
  ec2_outf(&o, "<spotPriceHistorySet>");
  long seen = 0, shown = 0;
  bool more = false;
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]) && !more; i++) {
    const itype_t *t = &types[i];
    const where_t *w = where(t, region);
    if (w == NULL || !type_asked(f, t->name))
      continue;
    for (const char *z = w->spot_zones; *z && !more; z++) {
      char zone[64];
      snprintf(zone, sizeof(zone), "%s%c", region, *z);
      if (az && strcmp(az, zone) != 0)
        continue;
      double p = spot_in(t, w, *z);
      struct {
        bool on;
        const char *desc;
        double price;
        const char *when;
      } rows[] = {
          {linux_, "Linux/UNIX", p, current},
          {linux_ && !latest_only, "Linux/UNIX", round(p * 11000.0) / 10000.0, older},
          {windows, "Windows", round((p + 0.0092 * t->vcpus) * 10000.0) / 10000.0, current}};
      for (size_t r = 0; r < 3; r++) {
        if (!rows[r].on || seen++ < skip)
          continue;
        if (shown == max) {
          more = true;
          break;
        }
        ec2_outf(&o, "<item>");
        ec2_elem(&o, "instanceType", t->name);
        ec2_elem(&o, "productDescription", rows[r].desc);
        ec2_outf(&o, "<spotPrice>%.6f</spotPrice>", rows[r].price);
        ec2_elem(&o, "timestamp", rows[r].when);
        ec2_elem(&o, "availabilityZone", zone);
        ec2_outf(&o, "</item>");
        shown++;
      }
    }
  }
  ec2_outf(&o, "</spotPriceHistorySet>");
  if (more)
    ec2_outf(&o, "<nextToken>kite-page-%ld</nextToken>", skip + shown);
  else
    ec2_outf(&o, "<nextToken/>");
  ec2_finish(resp, &o, "DescribeSpotPriceHistory");
}

/* ---- the Price List ------------------------------------------------------------------------- */

static const char *location_of(const char *region) {
  for (size_t i = 0; i < sizeof(regions) / sizeof(regions[0]); i++)
    if (strcmp(regions[i].region, region) == 0)
      return regions[i].location;
  return NULL;
}

/* One Price List product as GetProducts returns it (a JSON object; the front sends it as a
 * string). The Windows and dedicated-tenancy products of each type are there too, for the
 * filters to leave out. */
static json_t *product(const itype_t *t, const where_t *w, const char *os, const char *tenancy) {
  bool windows = strcmp(os, "Windows") == 0, dedicated = strcmp(tenancy, "Dedicated") == 0;
  double price = w->price + (windows ? 0.046 * t->vcpus : 0) + (dedicated ? 0.1 * w->price : 0);
  char sku[20], usd[32], mem[32], vcpu[16], desc[160], rate[64], term[40];
  unsigned h = 5381;
  for (const char *p = t->name; *p; p++)
    h = h * 33 + (unsigned char)*p;
  for (const char *p = w->region; *p; p++)
    h = h * 33 + (unsigned char)*p;
  snprintf(sku, sizeof(sku), "KSIM%08X%c%c", h, windows ? 'W' : 'L', dedicated ? 'D' : 'S');
  snprintf(usd, sizeof(usd), "%.10f", price);
  snprintf(mem, sizeof(mem), "%g GiB", t->memory_mib / 1024.0);
  snprintf(vcpu, sizeof(vcpu), "%u", t->vcpus);
  snprintf(desc, sizeof(desc), "$%.4f per On Demand %s %s Instance Hour", price, os, t->name);
  snprintf(term, sizeof(term), "%s.JRTCKXETXF", sku);
  snprintf(rate, sizeof(rate), "%s.6YS6EN2CT7", term);
  json_t *dim = json_pack("{s:s, s:s, s:s, s:[], s:s, s:s, s:{s:s}}", "unit", "Hrs", "endRange",
                          "Inf", "description", desc, "appliesTo", "rateCode", rate, "beginRange",
                          "0", "pricePerUnit", "USD", usd);
  json_t *od = json_pack("{s:{s:{s:o}, s:s, s:s, s:s, s:{}}}", term, "priceDimensions", rate, dim,
                         "sku", sku, "effectiveDate", "2024-06-01T00:00:00Z", "offerTermCode",
                         "JRTCKXETXF", "termAttributes");
  json_t *attrs =
      json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "servicecode",
                "AmazonEC2", "instanceType", t->name, "regionCode", w->region, "location",
                location_of(w->region), "locationType", "AWS Region", "operatingSystem", os,
                "tenancy", tenancy, "preInstalledSw", "NA", "capacitystatus", "Used",
                "licenseModel", "No License required", "vcpu", vcpu, "memory", mem, "operation",
                windows ? "RunInstances:0002" : "RunInstances");
  return json_pack("{s:{s:s, s:o, s:s}, s:s, s:{s:o}, s:s, s:s}", "product", "productFamily",
                   "Compute Instance", "attributes", attrs, "sku", sku, "serviceCode", "AmazonEC2",
                   "terms", "OnDemand", od, "version", "20240601000000", "publicationDate",
                   "2024-06-01T00:00:00Z");
}

/* Whether product p passes every filter (Field, Value pairs; ServiceCode is the request's). */
static bool passes(json_t *p, json_t *filters) {
  json_t *attrs = json_object_get(json_object_get(p, "product"), "attributes");
  size_t i;
  json_t *fl;
  json_array_foreach(filters, i, fl) {
    const char *field = json_string_value(json_object_get(fl, "Field"));
    const char *value = json_string_value(json_object_get(fl, "Value"));
    const char *have = json_string_value(json_object_get(attrs, field));
    if (strcmp(field, "ServiceCode") == 0)
      have = "AmazonEC2";
    if (have == NULL || strcmp(have, value) != 0)
      return false;
  }
  return true;
}

json_t *ec2_price_list(json_t *filters, long skip, long max, long *next) {
  json_t *out = json_array();
  long seen = 0;
  *next = -1;
  static const char *const oses[] = {"Linux", "Windows"};
  static const char *const tenancies[] = {"Shared", "Dedicated"};
  for (size_t r = 0; r < sizeof(regions) / sizeof(regions[0]); r++)
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
      const where_t *w = where(&types[i], regions[r].region);
      if (w == NULL || w->unlisted)
        continue;
      for (size_t k = 0; k < 4; k++) {
        json_t *p = product(&types[i], w, oses[k / 2], tenancies[k % 2]);
        if (!passes(p, filters) || seen++ < skip) {
          json_decref(p);
          continue;
        }
        if ((long)json_array_size(out) == max) {
          json_decref(p);
          *next = skip + max;
          return out;
        }
        json_array_append_new(out, p);
      }
    }
  return out;
}

/* ---- control -------------------------------------------------------------------------------- */

static json_t *table_json(void) {
  json_t *out = json_object();
  for (size_t r = 0; r < sizeof(regions) / sizeof(regions[0]); r++) {
    const char *region = regions[r].region;
    json_t *list = json_array();
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
      const itype_t *t = &types[i];
      const where_t *w = where(t, region);
      json_t *spot = json_object();
      for (const char *z = w->spot_zones; *z; z++) {
        char zone[64];
        snprintf(zone, sizeof(zone), "%s%c", region, *z);
        json_object_set_new(spot, zone, json_real(spot_in(t, w, *z)));
      }
      json_t *zones = json_array();
      for (const char *z = w->zones; *z; z++) {
        char zone[64];
        snprintf(zone, sizeof(zone), "%s%c", region, *z);
        json_array_append_new(zones, json_string(zone));
      }
      json_array_append_new(list,
                            json_pack("{s:s, s:i, s:i, s:s, s:s?, s:i, s:i, s:i, s:o, s:o, s:o}",
                                      "instance_type", t->name, "vcpus", t->vcpus, "memory_mib",
                                      t->memory_mib, "arch", t->arch, "gpu", t->gpu, "gpu_count",
                                      t->gpu_count, "gpu_mib", t->gpu_mib, "disk_gb", t->disk_gb,
                                      "price", w->unlisted ? json_null() : json_real(w->price),
                                      "spot", spot, "zones", zones));
    }
    json_object_set_new(out, region, list);
  }
  return out;
}

typedef struct override {
  char action[64];
  int status;
  unsigned times; /* answers left */
  char *body;
  size_t len;
} override_t;

static override_t overrides[8];

bool ec2_override_take(const char *action, http_resp_t *resp) {
  for (size_t i = 0; action && i < 8; i++)
    if (overrides[i].body && strcmp(overrides[i].action, action) == 0) {
      resp->status = overrides[i].status;
      resp->body_len = overrides[i].len;
      if (--overrides[i].times) {
        resp->body = malloc(overrides[i].len + 1);
        memcpy(resp->body, overrides[i].body, overrides[i].len + 1);
      } else {
        resp->body = overrides[i].body;
        memset(&overrides[i], 0, sizeof(overrides[i]));
      }
      return true;
    }
  return false;
}

void ec2_catalog_free(void) {
  for (size_t i = 0; i < 8; i++)
    free(overrides[i].body);
  memset(overrides, 0, sizeof(overrides));
}

bool ec2_catalog_control(const http_req_t *req, http_resp_t *resp) {
  bool get = strcmp(req->method, "GET") == 0, post = strcmp(req->method, "POST") == 0;
  bool catalog = strcmp(req->path, "/_sim/ec2/catalog") == 0;
  if (!(catalog && (get || post)) && !(post && strcmp(req->path, "/_sim/ec2/override") == 0))
    return false;
  if (catalog && get) {
    json_t *t = table_json();
    http_json(resp, 200, json_dumps(t, JSON_COMPACT | JSON_REAL_PRECISION(10)));
    json_decref(t);
    return true;
  }
  json_error_t je;
  json_t *j = json_loadb(req->body ? req->body : "", req->body_len, 0, &je);
  if (!json_is_object(j)) {
    json_decref(j);
    http_error(resp, 400, "bad_request", "the body must be a JSON object");
    return true;
  }
  if (catalog) {
    json_t *pm = json_object_get(j, "page_max");
    page_max =
        json_is_integer(pm) && json_integer_value(pm) > 0 ? (unsigned)json_integer_value(pm) : 0;
    http_json(resp, 200, sim_sprintf("{\"page_max\":%u}", page_max));
  } else if (json_is_true(json_object_get(j, "clear"))) {
    ec2_catalog_free();
    http_json(resp, 200, strdup("{\"ok\":true}"));
  } else {
    const char *action = json_string_value(json_object_get(j, "action"));
    json_t *body = json_object_get(j, "body");
    json_t *status = json_object_get(j, "status");
    override_t *slot = NULL;
    for (size_t i = 0; i < 8 && slot == NULL; i++)
      slot = overrides[i].body ? NULL : &overrides[i];
    if (action == NULL || !json_is_string(body) || slot == NULL || strlen(action) >= 64) {
      http_error(resp, 400, "bad_request", "give action and body (strings); at most 8 at once");
    } else {
      snprintf(slot->action, sizeof(slot->action), "%s", action);
      slot->status = json_is_integer(status) ? (int)json_integer_value(status) : 200;
      json_t *times = json_object_get(j, "times");
      slot->times = json_is_integer(times) && json_integer_value(times) > 0
                        ? (unsigned)json_integer_value(times)
                        : 1;
      slot->len = json_string_length(body);
      slot->body = malloc(slot->len + 1);
      memcpy(slot->body, json_string_value(body), slot->len + 1);
      http_json(resp, 200, strdup("{\"ok\":true}"));
    }
  }
  json_decref(j);
  return true;
}
