// Source of the PTX in `cuda_kernel.ptx`, the one kernel the CUDA backend launches for a
// `ComputeStep`. Regenerate with:
//   nvcc -ptx -arch=compute_75 -o cuda_kernel.ptx cuda_kernel.cu
// then set `.version 6.0` and `.target sm_60` (the instructions are all sm_60 ones: 64-bit global
// atomics and %globaltimer), so drivers older than the nvcc that built it still JIT it.
//
// The step (1) adds the wrapping sum of the input's little-endian u32 words (then of its trailing
// bytes) to the u64 at `out`, when `out` is not null: the "layer reads its weights" part, whose
// result lets tests check that the weights had landed before the step ran; and (2) spins on the
// global nanosecond timer until `spin_ns` have passed since the thread started: the modelled
// compute time of the layer. The grid is sized to be resident at once, so every thread starts
// within a few microseconds of the others.
extern "C" __global__ void farmem_compute_step(const unsigned char* in, unsigned long long len,
                                               unsigned long long* out,
                                               unsigned long long spin_ns) {
    unsigned long long t0;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    unsigned long long tid = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    unsigned long long nthreads = (unsigned long long)gridDim.x * blockDim.x;
    if (out != 0) {
        unsigned long long words = len / 4;
        const unsigned int* w = (const unsigned int*)in;
        unsigned long long sum = 0;
        for (unsigned long long i = tid; i < words; i += nthreads) sum += w[i];
        if (tid == 0) {
            for (unsigned long long i = words * 4; i < len; ++i) sum += in[i];
        }
        atomicAdd(out, sum);
    }
    if (spin_ns != 0) {
        unsigned long long now;
        do {
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
        } while (now - t0 < spin_ns);
    }
}
