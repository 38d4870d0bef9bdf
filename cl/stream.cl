/*
 * cl/stream.cl - the copy kernel kdcl bench uses to measure device memory
 * bandwidth (method as clpeak: a large buffer, float4 loads and stores,
 * best of several runs).  Each work-item copies one float4; bytes moved =
 * read + written.
 */
__kernel void kdcl_stream_copy(__global const float4 *restrict src,
                               __global float4 *restrict dst, uint n)
{
    const uint i = get_global_id(0);
    if (i < n)
        dst[i] = src[i];
}
