fn main() {
    let _ = criterion::Criterion::default();
    let _ = ureq::get("http://127.0.0.1:1/");
    println!("{}", std::any::type_name::<edict::catalog::Catalog>());
}
