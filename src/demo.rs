pub fn run(_once: bool) -> u8 {
    0
}
