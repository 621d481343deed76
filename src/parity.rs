//! XOR parity. (placeholder, being written)
