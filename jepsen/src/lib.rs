//! # tally-jepsen
//!
//! Chaos and partition testing of Tally in the style of Jepsen: `tallyd`
//! nodes run as separate hosts (Linux network namespaces on a bridge), a
//! nemesis injects faults on a schedule (partitions, kill -9, pause,
//! membership changes, leader transfer, message loss, message delay),
//! workloads drive concurrent clients through `tally-client`, every
//! operation is recorded in a history, and checkers decide whether the
//! history is valid (linearizable accounts, conservation, no lost or doubled
//! writes, convergence).
//!
//! Modules: [`history`] (the record), [`checker`] (pure verdicts),
//! [`hosts`] (namespaces, veths, bridge, iptables, cleanup), [`proxy`] (the
//! delaying TCP proxy), [`cluster`] (tallyd processes on the hosts),
//! [`nemesis`] (the fault trait and its implementations), [`workload`]
//! (clients), [`report`] (results.txt), [`svg`] (the picture), [`runner`]
//! (one test run end to end), [`cli`] (the command line).

#![forbid(unsafe_code)]

pub mod checker;
pub mod cli;
pub mod cluster;
pub mod history;
pub mod hosts;
pub mod nemesis;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod svg;
pub mod workload;
