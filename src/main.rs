use std::process::ExitCode;

// The daemon parses and drops tens of thousands of small JSON nodes every
// cycle; glibc's allocator spent a fifth of the cycle in malloc and free and
// kept freed memory as fragmented per-thread arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    pacer::cli::main()
}
