fn main() {
    println!("tracenat");
}
