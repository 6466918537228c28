/* The EC2 front of the emulator: the subset of the EC2 Query API (version 2016-11-15) that
 * kite uses, answered with EC2's XML shapes, error format and status codes. This file is the
 * actions (their parameters, checks and answers); the wire format is ec2_wire.c, the account's
 * resources ec2_resources.c (ec2_impl.h says which is where).
 *
 *   POST /  Action=RunInstances | DescribeInstances | TerminateInstances | ImportKeyPair |
 *           DescribeKeyPairs | DeleteKeyPair | CreateSecurityGroup | DescribeSecurityGroups |
 *           AuthorizeSecurityGroupIngress | DeleteSecurityGroup | DescribeInstanceTypes |
 *           DescribeSpotPriceHistory (ec2_catalog.c: the types, prices, and their routes)
 *   GET  /_sim/ec2/state                     instances by state, created, peak, key pairs and
 *                                            security groups
 *   POST /_sim/ec2/instances/{id}/interrupt  a spot interruption: the notice now (the
 *                                            metadata service serves instance-action), the
 *                                            machine dies notice_ms later ({"notice_ms": N},
 *                                            default 2000) and the instance ends terminated
 *                                            with Server.SpotInstanceTermination
 *
 * Instances are machines (machines.c): the public address is the node's loopback address, the
 * key pair's public key is the node's authorized key, and the ed25519 host key in cloud-init
 * user data becomes the node's host key before the instance is reported running.
 * ClientToken makes RunInstances idempotent. Terminated instances stay visible to
 * DescribeInstances, as on EC2. Injected faults answer in EC2's shapes: a 429 is
 * RequestLimitExceeded, a 500 InternalError, no capacity InsufficientInstanceCapacity, the
 * limit InstanceLimitExceeded.
 *
 * The account: $KITE_CLOUDSIM_AWS_ACCESS_KEY_ID (default AKIAKITECLOUDSIM0001) with the secret
 * $KITE_CLOUDSIM_AWS_SECRET_ACCESS_KEY (default: the emulator's --token). Spot instances serve
 * the metadata service on their address, port $KITE_CLOUDSIM_IMDS_PORT (default 8169). */
#include <fnmatch.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ec2_impl.h"

#define MAX_USER_DATA (16 * 1024)

/* ---- instances ------------------------------------------------------------------------------ */

static void render_instance(sim_t *sim, ec2_out_t *o, ec2_inst_t *e) {
  const char *rc, *rm;
  const char *state = ec2_inst_state(sim, e, &rc, &rm);
  static const struct {
    const char *name;
    int code;
  } codes[] = {{"pending", 0}, {"running", 16}, {"shutting-down", 32}, {"terminated", 48}};
  int code = 0;
  for (size_t i = 0; i < 4; i++)
    if (strcmp(codes[i].name, state) == 0)
      code = codes[i].code;
  ec2_outf(o, "<item>");
  ec2_elem(o, "instanceId", e->id);
  ec2_elem(o, "imageId", e->image);
  ec2_outf(o, "<instanceState><code>%d</code><name>%s</name></instanceState>", code, state);
  ec2_outf(o, "<privateDnsName>ip-%s.ec2.internal</privateDnsName><dnsName/>",
           e->address[0] ? e->address : "0-0-0-0");
  if (rc)
    ec2_elem(o, "reason", rm);
  ec2_elem(o, "keyName", e->key_name);
  ec2_outf(o, "<amiLaunchIndex>0</amiLaunchIndex><productCodes/>");
  ec2_elem(o, "instanceType", e->type);
  ec2_elem(o, "launchTime", e->launch_time);
  ec2_outf(o,
           "<placement><availabilityZone>%s</availabilityZone><groupName/><tenancy>default"
           "</tenancy></placement>",
           e->zone);
  ec2_outf(o, "<monitoring><state>disabled</state></monitoring>");
  if (e->subnet)
    ec2_elem(o, "subnetId", e->subnet);
  if (strcmp(state, "terminated") != 0 && e->address[0]) {
    ec2_elem(o, "privateIpAddress", e->address);
    ec2_elem(o, "ipAddress", e->address);
  }
  ec2_outf(o,
           "<groupSet><item><groupId>%s</groupId><groupName>kite-ssh</groupName></item>"
           "</groupSet>",
           e->sg_id ? e->sg_id : "");
  if (rc) {
    ec2_outf(o, "<stateReason>");
    ec2_elem(o, "code", rc);
    ec2_elem(o, "message", rm);
    ec2_outf(o, "</stateReason>");
  }
  ec2_outf(o, "<architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType>"
              "<rootDeviceName>/dev/sda1</rootDeviceName><blockDeviceMapping/>");
  if (e->spot)
    ec2_outf(o,
             "<instanceLifecycle>spot</instanceLifecycle><spotInstanceRequestId>sir-%.8s"
             "</spotInstanceRequestId>",
             e->id + 2);
  ec2_elem(o, "clientToken", e->client_token ? e->client_token : "");
  ec2_outf(o, "<virtualizationType>hvm</virtualizationType><hypervisor>xen</hypervisor>");
  if (e->tag_n) {
    ec2_outf(o, "<tagSet>");
    for (size_t i = 0; i < e->tag_n; i++) {
      ec2_outf(o, "<item>");
      ec2_elem(o, "key", e->tags[i].key);
      ec2_elem(o, "value", e->tags[i].value);
      ec2_outf(o, "</item>");
    }
    ec2_outf(o, "</tagSet>");
  }
  ec2_outf(o, "</item>");
}

static void render_run(sim_t *sim, http_resp_t *resp, ec2_inst_t *e) {
  ec2_out_t o;
  ec2_begin(&o, "RunInstances");
  ec2_outf(&o,
           "<reservationId>%s</reservationId><ownerId>" EC2_OWNER "</ownerId><groupSet/>"
           "<instancesSet>",
           e->reservation);
  render_instance(sim, &o, e);
  ec2_outf(&o, "</instancesSet>");
  ec2_finish(resp, &o, "RunInstances");
}

static void run_instances(sim_t *sim, const ec2_form_t *f, const char *region, http_resp_t *resp) {
  const char *token = ec2_param(f, "ClientToken");
  if (token && strlen(token) > 64) {
    ec2_error(resp, 400, "InvalidParameterValue",
              "Value (%s) for parameter clientToken is "
              "invalid. Length exceeds 64 characters.",
              token);
    return;
  }
  for (ec2_inst_t *e = ec2.insts; token && e; e = e->next)
    if (ec2_here(e->region) && e->client_token && strcmp(e->client_token, token) == 0) {
      render_run(sim, resp, e); /* idempotent: the same instance again */
      return;
    }
  const char *image = ec2_param(f, "ImageId"), *type = ec2_param(f, "InstanceType");
  const char *minc = ec2_param(f, "MinCount"), *maxc = ec2_param(f, "MaxCount");
  if (minc == NULL || maxc == NULL) {
    ec2_error(resp, 400, "MissingParameter", "The request must contain the parameter %s",
              minc ? "MaxCount" : "MinCount");
    return;
  }
  if (atoi(minc) != 1 || atoi(maxc) != 1) {
    ec2_error(resp, 400, "InvalidParameterValue", "this emulator launches one instance per call");
    return;
  }
  if (image == NULL) {
    ec2_error(resp, 400, "MissingParameter", "The request must contain the parameter ImageId");
    return;
  }
  if (strncmp(image, "ami-", 4) != 0) {
    ec2_error(resp, 400, "InvalidAMIID.Malformed", "Invalid id: \"%s\" (expecting \"ami-...\")",
              image);
    return;
  }
  if (strstr(image, "notfound")) {
    ec2_error(resp, 400, "InvalidAMIID.NotFound", "The image id '[%s]' does not exist", image);
    return;
  }
  const char *key = ec2_param(f, "KeyName");
  ec2_key_pair_t *kp = NULL;
  for (ec2_key_pair_t *k = ec2.keys; key && k; k = k->next)
    if (ec2_here(k->region) && strcmp(k->name, key) == 0)
      kp = k;
  if (kp == NULL) {
    ec2_error(resp, 400, key ? "InvalidKeyPair.NotFound" : "MissingParameter",
              key ? "The key pair '%s' does not exist" : "this emulator needs KeyName%s",
              key ? key : "");
    return;
  }
  const char *sg = ec2_param(f, "SecurityGroupId.1");
  ec2_sgroup_t *grp = NULL;
  for (ec2_sgroup_t *s = ec2.groups; sg && s; s = s->next)
    if (ec2_here(s->region) && strcmp(s->id, sg) == 0)
      grp = s;
  if (sg && grp == NULL) {
    ec2_error(resp, 400, "InvalidGroup.NotFound", "The security group '%s' does not exist", sg);
    return;
  }
  const char *market = ec2_param(f, "InstanceMarketOptions.MarketType");
  bool spot = market && strcmp(market, "spot") == 0;
  if (market && !spot) {
    ec2_error(resp, 400, "InvalidParameterValue",
              "Value (%s) for parameter MarketType is "
              "invalid.",
              market);
    return;
  }
  const char *maxp = ec2_param(f, "InstanceMarketOptions.SpotOptions.MaxPrice");
  if (spot && maxp && atof(maxp) < 0.001) {
    ec2_error(resp, 400, "SpotMaxPriceTooLow",
              "Your Spot request price of %s is lower than the "
              "minimum required Spot request fulfillment price "
              "of 0.0031.",
              maxp);
    return;
  }
  /* The type and the zone, as EC2 refuses them: an unknown type is an invalid value, a type
   * not sold in the zone is unsupported there (with the zones that have it). */
  type = type ? type : "m1.small";
  const char *zone = ec2_param(f, "Placement.AvailabilityZone");
  if (zone && !ec2_zone_valid(region, zone)) {
    ec2_error(resp, 400, "InvalidParameterValue", "Invalid availability zone: [%s]", zone);
    return;
  }
  if (!ec2_type_exists(type)) {
    ec2_error(resp, 400, "InvalidParameterValue", "Invalid value '%s' for InstanceType.", type);
    return;
  }
  zone = zone ? zone : ec2_zone_default(type, region);
  if (!ec2_type_offered(type, region, zone)) {
    char zones[256];
    ec2_type_zones(type, region, zones, sizeof(zones));
    if (zones[0])
      ec2_error(resp, 400, "Unsupported",
                "Your requested instance type (%s) is not supported in your requested "
                "Availability Zone (%s). Please retry your request by not specifying an "
                "Availability Zone or choosing %s.",
                type, zone, zones);
    else
      ec2_error(resp, 400, "Unsupported",
                "The requested configuration is currently not supported. Please check the "
                "documentation for supported configurations.");
    return;
  }
  if (!sim_admit(sim, &ec2_front, ec2_live_count(sim), 1, type, region, spot, resp))
    return;
  /* User data: base64 of at most 16 KiB. */
  const char *ud64 = ec2_param(f, "UserData");
  char *ud = NULL;
  if (ud64) {
    size_t n = strlen(ud64);
    if (n > MAX_USER_DATA * 4 / 3 + 4 || n % 4) {
      ec2_error(resp, 400, "InvalidParameterValue",
                "User data is limited to 16384 bytes, in "
                "base64");
      return;
    }
    ud = calloc(1, n + 1);
    if (EVP_DecodeBlock((unsigned char *)ud, (const unsigned char *)ud64, (int)n) < 0) {
      free(ud);
      ec2_error(resp, 400, "InvalidParameterValue", "Invalid BASE64 encoding of user data");
      return;
    }
  }
  ec2_kv_t tagv[64];
  size_t tag_n = 0;
  for (unsigned s = 1; ec2_paramf(f, "TagSpecification.%u.ResourceType", s); s++) {
    if (strcmp(ec2_paramf(f, "TagSpecification.%u.ResourceType", s), "instance") != 0)
      continue;
    for (unsigned t = 1; tag_n < 64 && ec2_paramf(f, "TagSpecification.%u.Tag.%u.Key", s, t); t++) {
      tagv[tag_n].key = (char *)ec2_paramf(f, "TagSpecification.%u.Tag.%u.Key", s, t);
      tagv[tag_n].value = (char *)ec2_paramf(f, "TagSpecification.%u.Tag.%u.Value", s, t);
      tag_n++;
    }
  }
  ec2_launch_t l = {.client_token = token,
                    .image = image,
                    .type = type,
                    .key_name = key,
                    .sg_id = sg,
                    .subnet = ec2_param(f, "SubnetId"),
                    .region = region,
                    .zone = zone,
                    .price_hourly = ec2_type_price(type, region, zone, spot),
                    .user_data = ud,
                    .authorized_key = kp->material,
                    .tags = tagv,
                    .tag_n = tag_n,
                    .spot = spot};
  ec2_inst_t *e = ec2_inst_launch(sim, &l);
  free(ud);
  if (e == NULL) {
    ec2_error(resp, 500, "InternalError", "An internal error has occurred");
    return;
  }
  render_run(sim, resp, e);
}

/* Whether instance e passes filter (name, values). *bad set for an unknown filter name. */
static bool filter_pass(sim_t *sim, ec2_inst_t *e, const char *name, const char **vals, size_t n,
                        bool *bad) {
  const char *rc, *rm;
  const char *v = NULL;
  char buf[16];
  if (strcmp(name, "instance-state-name") == 0) {
    v = ec2_inst_state(sim, e, &rc, &rm);
  } else if (strcmp(name, "instance-id") == 0) {
    v = e->id;
  } else if (strcmp(name, "client-token") == 0) {
    v = e->client_token;
  } else if (strcmp(name, "key-name") == 0) {
    v = e->key_name;
  } else if (strcmp(name, "instance.group-id") == 0 || strcmp(name, "group-id") == 0) {
    v = e->sg_id;
  } else if (strcmp(name, "instance-lifecycle") == 0) {
    v = e->spot ? "spot" : NULL;
  } else if (strcmp(name, "instance-state-code") == 0) {
    const char *s = ec2_inst_state(sim, e, &rc, &rm);
    snprintf(buf, sizeof(buf), "%d",
             strcmp(s, "pending") == 0      ? 0
             : strcmp(s, "running") == 0    ? 16
             : strcmp(s, "terminated") == 0 ? 48
                                            : 32);
    v = buf;
  } else if (strncmp(name, "tag:", 4) == 0) {
    v = ec2_inst_tag(e, name + 4);
  } else if (strcmp(name, "tag-key") == 0) {
    for (size_t i = 0; i < n; i++)
      for (size_t t = 0; t < e->tag_n; t++)
        if (fnmatch(vals[i], e->tags[t].key, 0) == 0)
          return true;
    return false;
  } else {
    *bad = true;
    return false;
  }
  for (size_t i = 0; v && i < n; i++)
    if (fnmatch(vals[i], v, 0) == 0)
      return true;
  return false;
}

static void describe_instances(sim_t *sim, const ec2_form_t *f, http_resp_t *resp) {
  /* InstanceId.N: every one must exist. */
  size_t ids = 0;
  for (unsigned k = 1; ec2_paramf(f, "InstanceId.%u", k); k++) {
    ids++;
    if (ec2_inst_find(ec2_paramf(f, "InstanceId.%u", k)) == NULL) {
      ec2_error(resp, 400, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist",
                ec2_paramf(f, "InstanceId.%u", k));
      return;
    }
  }
  const char *mr = ec2_param(f, "MaxResults"), *nt = ec2_param(f, "NextToken");
  long max = mr ? atol(mr) : 0;
  if (mr && ids) {
    ec2_error(resp, 400, "InvalidParameterCombination",
              "The parameter instancesSet cannot be "
              "used with the parameter maxResults");
    return;
  }
  if (mr && (max < 5 || max > 1000)) {
    ec2_error(resp, 400, "InvalidParameterValue",
              "Value ( %s ) for parameter maxResults is "
              "invalid. Expecting a value between 5 and "
              "1000.",
              mr);
    return;
  }
  long skip = 0;
  if (nt && (sscanf(nt, "kite-page-%ld", &skip) != 1 || skip < 0)) {
    ec2_error(resp, 400, "InvalidParameterValue", "Invalid value '%s' for nextToken", nt);
    return;
  }
  /* Oldest first, as a list would be read. */
  size_t total = 0;
  for (ec2_inst_t *e = ec2.insts; e; e = e->next)
    total += ec2_here(e->region);
  ec2_inst_t **all = calloc(total + 1, sizeof(*all));
  size_t k = total;
  for (ec2_inst_t *e = ec2.insts; e; e = e->next)
    if (ec2_here(e->region))
      all[--k] = e;
  ec2_out_t o;
  ec2_begin(&o, "DescribeInstances");
  ec2_outf(&o, "<reservationSet>");
  long matched = 0, shown = 0;
  bool more = false;
  for (size_t i = 0; i < total; i++) {
    ec2_inst_t *e = all[i];
    bool pass = true;
    if (ids) {
      pass = false;
      for (unsigned j = 1; ec2_paramf(f, "InstanceId.%u", j); j++)
        pass |= strcmp(ec2_paramf(f, "InstanceId.%u", j), e->id) == 0;
    }
    for (unsigned fi = 1; pass && ec2_paramf(f, "Filter.%u.Name", fi); fi++) {
      const char *vals[32];
      size_t n = 0;
      for (unsigned vi = 1; n < 32 && ec2_paramf(f, "Filter.%u.Value.%u", fi, vi); vi++)
        vals[n++] = ec2_paramf(f, "Filter.%u.Value.%u", fi, vi);
      bool bad = false;
      pass = filter_pass(sim, e, ec2_paramf(f, "Filter.%u.Name", fi), vals, n, &bad);
      if (bad) {
        ec2_discard(&o);
        free(all);
        ec2_error(resp, 400, "InvalidParameterValue", "The filter '%s' is invalid",
                  ec2_paramf(f, "Filter.%u.Name", fi));
        return;
      }
    }
    if (!pass)
      continue;
    if (matched++ < skip)
      continue;
    if (max && shown == max) {
      more = true;
      break;
    }
    shown++;
    ec2_outf(&o,
             "<item><reservationId>%s</reservationId><ownerId>" EC2_OWNER "</ownerId><groupSet/>"
             "<instancesSet>",
             e->reservation);
    render_instance(sim, &o, e);
    ec2_outf(&o, "</instancesSet></item>");
  }
  free(all);
  ec2_outf(&o, "</reservationSet>");
  if (more)
    ec2_outf(&o, "<nextToken>kite-page-%ld</nextToken>", skip + shown);
  ec2_finish(resp, &o, "DescribeInstances");
}

static void terminate_instances(sim_t *sim, const ec2_form_t *f, http_resp_t *resp) {
  if (ec2_param(f, "InstanceId.1") == NULL) {
    ec2_error(resp, 400, "MissingParameter", "The request must contain the parameter InstanceId");
    return;
  }
  for (unsigned k = 1; ec2_paramf(f, "InstanceId.%u", k); k++)
    if (ec2_inst_find(ec2_paramf(f, "InstanceId.%u", k)) == NULL) {
      ec2_error(resp, 400, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist",
                ec2_paramf(f, "InstanceId.%u", k));
      return;
    }
  ec2_out_t o;
  ec2_begin(&o, "TerminateInstances");
  ec2_outf(&o, "<instancesSet>");
  for (unsigned k = 1; ec2_paramf(f, "InstanceId.%u", k); k++) {
    ec2_inst_t *e = ec2_inst_find(ec2_paramf(f, "InstanceId.%u", k));
    const char *rc, *rm;
    const char *before = ec2_inst_state(sim, e, &rc, &rm);
    if (strcmp(before, "terminated") != 0)
      ec2_inst_terminate(sim, e);
    const char *after = ec2_inst_state(sim, e, &rc, &rm);
    ec2_outf(&o,
             "<item><instanceId>%s</instanceId><currentState><code>%d</code><name>%s</name>"
             "</currentState><previousState><code>%d</code><name>%s</name></previousState>"
             "</item>",
             e->id, strcmp(after, "terminated") == 0 ? 48 : 32, after,
             strcmp(before, "running") == 0      ? 16
             : strcmp(before, "pending") == 0    ? 0
             : strcmp(before, "terminated") == 0 ? 48
                                                 : 32,
             before);
  }
  ec2_outf(&o, "</instancesSet>");
  ec2_finish(resp, &o, "TerminateInstances");
}

/* ---- key pairs and security groups -------------------------------------------------------- */

static bool managed_tag(const ec2_form_t *f, const char *type) {
  for (unsigned s = 1; ec2_paramf(f, "TagSpecification.%u.ResourceType", s); s++) {
    if (strcmp(ec2_paramf(f, "TagSpecification.%u.ResourceType", s), type) != 0)
      continue;
    for (unsigned t = 1; ec2_paramf(f, "TagSpecification.%u.Tag.%u.Key", s, t); t++)
      if (strcmp(ec2_paramf(f, "TagSpecification.%u.Tag.%u.Key", s, t), "kite:managed") == 0)
        return true;
  }
  return false;
}

static void managed_tagset(ec2_out_t *o, bool managed) {
  if (managed)
    ec2_outf(o, "<tagSet><item><key>kite:managed</key><value>true</value></item></tagSet>");
  else
    ec2_outf(o, "<tagSet/>");
}

static void import_key_pair(const ec2_form_t *f, http_resp_t *resp) {
  const char *name = ec2_param(f, "KeyName"), *mat64 = ec2_param(f, "PublicKeyMaterial");
  if (name == NULL || mat64 == NULL) {
    ec2_error(resp, 400, "MissingParameter", "The request must contain the parameter %s",
              name ? "PublicKeyMaterial" : "KeyName");
    return;
  }
  if (ec2_key_find(name)) {
    ec2_error(resp, 400, "InvalidKeyPair.Duplicate", "The keypair already exists");
    return;
  }
  size_t n = strlen(mat64);
  char *mat = calloc(1, n + 1);
  if (n % 4 || EVP_DecodeBlock((unsigned char *)mat, (const unsigned char *)mat64, (int)n) < 0 ||
      strncmp(mat, "ssh-", 4) != 0) {
    free(mat);
    ec2_error(resp, 400, "InvalidKey.Format", "Key is not in valid OpenSSH public key format");
    return;
  }
  mat[strcspn(mat, "\r\n")] = '\0';
  ec2_key_pair_t *k = ec2_key_add(name, mat, managed_tag(f, "key-pair"));
  ec2_out_t o;
  ec2_begin(&o, "ImportKeyPair");
  ec2_elem(&o, "keyFingerprint", k->fingerprint);
  ec2_elem(&o, "keyName", k->name);
  ec2_elem(&o, "keyPairId", k->id);
  managed_tagset(&o, k->managed);
  ec2_finish(resp, &o, "ImportKeyPair");
}

static void describe_key_pairs(const ec2_form_t *f, http_resp_t *resp) {
  for (unsigned i = 1; ec2_paramf(f, "KeyName.%u", i); i++) {
    bool found = false;
    for (ec2_key_pair_t *k = ec2.keys; k; k = k->next)
      found |= ec2_here(k->region) && strcmp(k->name, ec2_paramf(f, "KeyName.%u", i)) == 0;
    if (!found) {
      ec2_error(resp, 400, "InvalidKeyPair.NotFound", "The key pair '%s' does not exist",
                ec2_paramf(f, "KeyName.%u", i));
      return;
    }
  }
  ec2_out_t o;
  ec2_begin(&o, "DescribeKeyPairs");
  ec2_outf(&o, "<keySet>");
  for (ec2_key_pair_t *k = ec2.keys; k; k = k->next) {
    if (!ec2_here(k->region))
      continue;
    bool want = ec2_param(f, "KeyName.1") == NULL;
    for (unsigned i = 1; ec2_paramf(f, "KeyName.%u", i); i++)
      want |= strcmp(k->name, ec2_paramf(f, "KeyName.%u", i)) == 0;
    if (!want)
      continue;
    ec2_outf(&o, "<item>");
    ec2_elem(&o, "keyPairId", k->id);
    ec2_elem(&o, "keyName", k->name);
    ec2_elem(&o, "keyFingerprint", k->fingerprint);
    ec2_elem(&o, "keyType", "ed25519");
    managed_tagset(&o, k->managed);
    ec2_outf(&o, "</item>");
  }
  ec2_outf(&o, "</keySet>");
  ec2_finish(resp, &o, "DescribeKeyPairs");
}

static void delete_key_pair(const ec2_form_t *f, http_resp_t *resp) {
  ec2_key_delete(ec2_param(f, "KeyName"));
  ec2_out_t o;
  ec2_begin(&o, "DeleteKeyPair");
  ec2_outf(&o, "<return>true</return>");
  ec2_finish(resp, &o, "DeleteKeyPair");
}

static void create_security_group(const ec2_form_t *f, http_resp_t *resp) {
  const char *name = ec2_param(f, "GroupName"), *desc = ec2_param(f, "GroupDescription");
  if (name == NULL || desc == NULL) {
    ec2_error(resp, 400, "MissingParameter", "The request must contain the parameter %s",
              name ? "GroupDescription" : "GroupName");
    return;
  }
  for (ec2_sgroup_t *s = ec2.groups; s; s = s->next)
    if (ec2_here(s->region) && strcmp(s->name, name) == 0) {
      ec2_error(resp, 400, "InvalidGroup.Duplicate",
                "The security group '%s' already exists "
                "for VPC 'vpc-0kite'",
                name);
      return;
    }
  ec2_sgroup_t *s = ec2_group_add(name, desc, managed_tag(f, "security-group"));
  ec2_out_t o;
  ec2_begin(&o, "CreateSecurityGroup");
  ec2_outf(&o, "<return>true</return>");
  ec2_elem(&o, "groupId", s->id);
  managed_tagset(&o, s->managed);
  ec2_finish(resp, &o, "CreateSecurityGroup");
}

static void describe_security_groups(const ec2_form_t *f, http_resp_t *resp) {
  for (unsigned fi = 1; ec2_paramf(f, "Filter.%u.Name", fi); fi++) {
    const char *n = ec2_paramf(f, "Filter.%u.Name", fi);
    if (strcmp(n, "group-name") != 0 && strcmp(n, "group-id") != 0) {
      ec2_error(resp, 400, "InvalidParameterValue", "The filter '%s' is invalid", n);
      return;
    }
  }
  ec2_out_t o;
  ec2_begin(&o, "DescribeSecurityGroups");
  ec2_outf(&o, "<securityGroupInfo>");
  for (ec2_sgroup_t *s = ec2.groups; s; s = s->next) {
    bool pass = ec2_here(s->region);
    for (unsigned fi = 1; pass && ec2_paramf(f, "Filter.%u.Name", fi); fi++) {
      const char *n = ec2_paramf(f, "Filter.%u.Name", fi);
      const char *v = strcmp(n, "group-name") == 0 ? s->name : s->id;
      pass = false;
      for (unsigned vi = 1; ec2_paramf(f, "Filter.%u.Value.%u", fi, vi); vi++)
        pass |= fnmatch(ec2_paramf(f, "Filter.%u.Value.%u", fi, vi), v, 0) == 0;
    }
    if (ec2_param(f, "GroupId.1")) {
      bool any = false;
      for (unsigned i = 1; ec2_paramf(f, "GroupId.%u", i); i++)
        any |= strcmp(ec2_paramf(f, "GroupId.%u", i), s->id) == 0;
      pass &= any;
    }
    if (!pass)
      continue;
    ec2_outf(&o, "<item><ownerId>" EC2_OWNER "</ownerId>");
    ec2_elem(&o, "groupId", s->id);
    ec2_elem(&o, "groupName", s->name);
    ec2_elem(&o, "groupDescription", s->description);
    ec2_outf(&o, "<vpcId>vpc-0kite</vpcId><ipPermissions>");
    for (char *l = s->perms; *l;) {
      char proto[8];
      int from, to;
      char cidr[64];
      if (sscanf(l, "%7[^:]:%d-%d:%63s", proto, &from, &to, cidr) == 4)
        ec2_outf(&o,
                 "<item><ipProtocol>%s</ipProtocol><fromPort>%d</fromPort><toPort>%d</toPort>"
                 "<groups/><ipRanges><item><cidrIp>%s</cidrIp></item></ipRanges>"
                 "<ipv6Ranges/><prefixListIds/></item>",
                 proto, from, to, cidr);
      l += strcspn(l, "\n");
      if (*l)
        l++;
    }
    ec2_outf(&o, "</ipPermissions><ipPermissionsEgress/>");
    managed_tagset(&o, s->managed);
    ec2_outf(&o, "</item>");
  }
  ec2_outf(&o, "</securityGroupInfo>");
  ec2_finish(resp, &o, "DescribeSecurityGroups");
}

static ec2_sgroup_t *group_by(const ec2_form_t *f) {
  return ec2_group_find(ec2_param(f, "GroupId"), ec2_param(f, "GroupName"));
}

static void authorize_ingress(const ec2_form_t *f, http_resp_t *resp) {
  ec2_sgroup_t *s = group_by(f);
  if (s == NULL) {
    ec2_error(resp, 400, "InvalidGroup.NotFound", "The security group '%s' does not exist",
              ec2_param(f, "GroupId") ? ec2_param(f, "GroupId") : "");
    return;
  }
  for (unsigned p = 1; ec2_paramf(f, "IpPermissions.%u.IpProtocol", p); p++) {
    const char *from = ec2_paramf(f, "IpPermissions.%u.FromPort", p);
    const char *to = ec2_paramf(f, "IpPermissions.%u.ToPort", p);
    for (unsigned r = 1; ec2_paramf(f, "IpPermissions.%u.IpRanges.%u.CidrIp", p, r); r++) {
      if (!ec2_group_allow(s, ec2_paramf(f, "IpPermissions.%u.IpProtocol", p), from, to,
                           ec2_paramf(f, "IpPermissions.%u.IpRanges.%u.CidrIp", p, r))) {
        ec2_error(resp, 400, "InvalidPermission.Duplicate",
                  "the specified rule already "
                  "exists");
        return;
      }
    }
  }
  ec2_out_t o;
  ec2_begin(&o, "AuthorizeSecurityGroupIngress");
  ec2_outf(&o, "<return>true</return>");
  ec2_finish(resp, &o, "AuthorizeSecurityGroupIngress");
}

static void delete_security_group(sim_t *sim, const ec2_form_t *f, http_resp_t *resp) {
  ec2_sgroup_t *s = group_by(f);
  if (s == NULL) {
    ec2_error(resp, 400, "InvalidGroup.NotFound", "The security group '%s' does not exist",
              ec2_param(f, "GroupId") ? ec2_param(f, "GroupId") : "");
    return;
  }
  if (ec2_group_in_use(sim, s)) {
    ec2_error(resp, 400, "DependencyViolation", "resource %s has a dependent object", s->id);
    return;
  }
  ec2_group_delete(s);
  ec2_out_t o;
  ec2_begin(&o, "DeleteSecurityGroup");
  ec2_outf(&o, "<return>true</return>");
  ec2_finish(resp, &o, "DeleteSecurityGroup");
}

/* ---- control -------------------------------------------------------------------------------- */

static void control_state(sim_t *sim, http_resp_t *resp) {
  json_t *list = json_array();
  unsigned by[4] = {0};
  const char *names[4] = {"pending", "running", "shutting-down", "terminated"};
  for (ec2_inst_t *e = ec2.insts; e; e = e->next) {
    const char *rc, *rm;
    const char *s = ec2_inst_state(sim, e, &rc, &rm);
    for (int i = 0; i < 4; i++)
      by[i] += strcmp(s, names[i]) == 0;
    json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s?, s:b, s:s?, s:s?, s:s, s:s}", "id",
                                          e->id, "state", s, "address", e->address, "client_token",
                                          e->client_token, "spot", e->spot, "pool",
                                          ec2_inst_tag(e, "kite:pool"), "region", e->region, "zone",
                                          e->zone, "instance_type", e->type));
  }
  unsigned keys = 0, groups = 0;
  for (ec2_key_pair_t *k = ec2.keys; k; k = k->next)
    keys++;
  for (ec2_sgroup_t *s = ec2.groups; s; s = s->next)
    groups++;
  json_t *j = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o}", "live",
                        by[0] + by[1] + by[2], "pending", by[0], "running", by[1], "shutting_down",
                        by[2], "terminated", by[3], "created", ec2.created, "key_pairs", keys,
                        "security_groups", groups, "instances", list);
  json_object_set_new(j, "peak", json_integer(ec2.peak));
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  http_json(resp, 200, s);
}

static void control_interrupt(sim_t *sim, const http_req_t *req, const char *id,
                              http_resp_t *resp) {
  ec2_inst_t *e = ec2_inst_find(id);
  const char *rc, *rm;
  if (e == NULL || strcmp(ec2_inst_state(sim, e, &rc, &rm), "running") != 0) {
    http_error(resp, 404, "not_found", "no such running instance");
    return;
  }
  if (!e->spot) {
    http_error(resp, 422, "not_spot", "only spot instances are interrupted");
    return;
  }
  json_error_t je;
  json_t *j = req->body_len ? json_loadb(req->body, req->body_len, 0, &je) : NULL;
  json_t *nm = json_object_get(j, "notice_ms");
  uint64_t notice = json_is_integer(nm) ? (uint64_t)json_integer_value(nm) : 2000;
  json_decref(j);
  const char *ts = ec2_inst_interrupt(sim, e, notice);
  http_json(resp, 200, sim_sprintf("{\"ok\":true,\"time\":\"%s\"}", ts));
}

static bool ec2_control(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  if (strncmp(req->path, "/_sim/ec2/", 10) != 0)
    return false;
  ec2_init(sim);
  ec2.region[0] = '\0'; /* the control endpoint sees every region */
  char id[40], tail[16];
  if (ec2_catalog_control(req, resp))
    ;
  else if (strcmp(req->path, "/_sim/ec2/state") == 0 && strcmp(req->method, "GET") == 0)
    control_state(sim, resp);
  else if (sscanf(req->path, "/_sim/ec2/instances/%39[^/]/%15s", id, tail) == 2 &&
           strcmp(tail, "interrupt") == 0 && strcmp(req->method, "POST") == 0)
    control_interrupt(sim, req, id, resp);
  else
    http_error(resp, 404, "not_found", "no such control route");
  return true;
}

/* ---- the front ------------------------------------------------------------------------------ */

/* An EC2 Query API call: POST / with a form body (and no X-Amz-Target: that is a JSON
 * protocol call, the Pricing front's). */
static bool ec2_match(const http_req_t *req) {
  return strcmp(req->path, "/") == 0 && strcmp(req->method, "POST") == 0 &&
         http_req_header(req, "X-Amz-Target") == NULL;
}

static void ec2_handle(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  ec2_init(sim);
  char region[64] = "";
  ec2.region[0] = '\0';
  if (!ec2_check_signature(req, ec2.access_key, ec2.secret, resp, region))
    return;
  snprintf(ec2.region, sizeof(ec2.region), "%s", region);
  ec2_form_t f;
  ec2_form_parse(req->body, req->body_len, &f);
  const char *action = ec2_check_call(&f, resp);
  if (action == NULL || ec2_override_take(action, resp))
    ;
  else if (strcmp(action, "DescribeInstanceTypes") == 0)
    ec2_describe_instance_types(&f, region, resp);
  else if (strcmp(action, "DescribeSpotPriceHistory") == 0)
    ec2_describe_spot_price_history(&f, region, resp);
  else if (strcmp(action, "RunInstances") == 0)
    run_instances(sim, &f, region, resp);
  else if (strcmp(action, "DescribeInstances") == 0)
    describe_instances(sim, &f, resp);
  else if (strcmp(action, "TerminateInstances") == 0)
    terminate_instances(sim, &f, resp);
  else if (strcmp(action, "ImportKeyPair") == 0)
    import_key_pair(&f, resp);
  else if (strcmp(action, "DescribeKeyPairs") == 0)
    describe_key_pairs(&f, resp);
  else if (strcmp(action, "DeleteKeyPair") == 0)
    delete_key_pair(&f, resp);
  else if (strcmp(action, "CreateSecurityGroup") == 0)
    create_security_group(&f, resp);
  else if (strcmp(action, "DescribeSecurityGroups") == 0)
    describe_security_groups(&f, resp);
  else if (strcmp(action, "AuthorizeSecurityGroupIngress") == 0)
    authorize_ingress(&f, resp);
  else if (strcmp(action, "DeleteSecurityGroup") == 0)
    delete_security_group(sim, &f, resp);
  ec2_form_free(&f);
}

static void ec2_no_capacity(http_resp_t *resp, const char *type, const char *region) {
  ec2_error(resp, 500, "InsufficientInstanceCapacity",
            "We currently do not have sufficient %s capacity in the Availability Zone you "
            "requested (%sa). Our system will be working on provisioning additional capacity.",
            type, region);
}

static void ec2_over_limit(http_resp_t *resp, unsigned limit, unsigned wanted) {
  ec2_error(resp, 400, "InstanceLimitExceeded",
            "You have requested more instances (%u) than "
            "your current instance limit of %u allows for "
            "the specified instance type.",
            wanted, limit);
}

static void ec2_free(sim_t *sim) {
  (void)sim;
  ec2_account_free();
  ec2_catalog_free();
}

const sim_front_t ec2_front = {
    .name = EC2_CLOUD,
    .match = ec2_match,
    .handle = ec2_handle,
    .control = ec2_control,
    .error = ec2_error_body,
    .content_type = "text/xml;charset=UTF-8",
    .rate_limited = {429, "RequestLimitExceeded", "Request limit exceeded."},
    .server_error = {500, "InternalError", "An internal error has occurred."},
    .malformed_body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Err",
    .no_capacity = ec2_no_capacity,
    .over_limit = ec2_over_limit,
    .free = ec2_free,
};
