//! Benchmark of VCDIFF decoding; filled in with the decoder.

fn main() {}
