include!("../mlx-sys/link_consumer.rs");

fn main() {
    link_mlx_consumer();
}
