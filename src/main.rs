fn main() {
    println!("stele");
}
