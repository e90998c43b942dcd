#include "kernels/digest/digest_impl.h"

namespace convforge {

Digest digest__ref(const unsigned char* data, int64_t bytes) { return digest_detail::digest_ref_impl(data, bytes); }

}  // namespace convforge
