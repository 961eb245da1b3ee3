pub mod dht;
