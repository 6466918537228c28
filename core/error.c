/* Error codes: one table (KITE_ERRNO_MAP) generates the enum, names and messages. */
#include "kite_impl.h"

const char *kite_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define X(name, msg)                                                                         \
  case KITE_##name:                                                                          \
    return msg;
    KITE_ERRNO_MAP(X)
#undef X
  default:
    return "unknown error";
  }
}

const char *kite_err_name(int err) {
  switch (err) {
  case 0:
    return "KITE_OK";
#define X(name, msg)                                                                         \
  case KITE_##name:                                                                          \
    return "KITE_" #name;
    KITE_ERRNO_MAP(X)
#undef X
  default:
    return "KITE_EUNKNOWN";
  }
}

int kite_err_from_uv(int uverr) {
  switch (uverr) {
  case 0:
    return 0;
  case UV_ENOMEM:
    return KITE_ENOMEM;
  case UV_EINVAL:
    return KITE_EINVAL;
  case UV_ENOENT:
    return KITE_ENOENT;
  case UV_EEXIST:
    return KITE_EEXIST;
  case UV_EBUSY:
    return KITE_EBUSY;
  case UV_EAGAIN:
    return KITE_EAGAIN;
  case UV_ETIMEDOUT:
    return KITE_ETIMEDOUT;
  case UV_ECANCELED:
    return KITE_ECANCELED;
  case UV_ECONNREFUSED:
    return KITE_ECONNREFUSED;
  case UV_ECONNRESET:
  case UV_EPIPE:
  case UV_EOF:
    return KITE_ECONNLOST;
  case UV_EHOSTUNREACH:
  case UV_ENETUNREACH:
  case UV_EAI_NONAME:
  case UV_EAI_AGAIN:
  case UV_EAI_FAIL:
    return KITE_EHOSTUNREACH;
  default:
    return KITE_EIO;
  }
}

const char *kite_version(void) { return KITE_VERSION_STRING; }
