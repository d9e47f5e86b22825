//! Closure children: the code that runs a closure after the fork and sends its result.
