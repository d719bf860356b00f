//! End-to-end tests: the real `pacer` binary against real Git repos and the simulator.
mod sim;
