//! What a component's code says about how it was compiled.
//!
//! A plan built without `-C target-feature=+simd128` still runs and trains
//! to the same parameters, only about three times slower: a silent trap for
//! an author whose crate lives outside `plans/` (where the flag is set).
//! The SDK refuses to compile for wasm without it, but a component may come
//! from elsewhere, so the node and `plan check` look at the code itself: a
//! build with simd128 declares 128-bit vector values (`v128` locals,
//! parameters or results) somewhere in its core modules; a build without it
//! cannot.

use wasmparser::{Parser, Payload, ValType};

/// What the node tells an author whose component has no 128-bit SIMD code.
pub const NO_SIMD128: &str = "this plan was compiled without 128-bit SIMD (no v128 values in its code), so its own arithmetic runs about 3x slower than it could; build it with `fedwasm plan build <crate folder>`, or add `[target.wasm32-wasip2] rustflags = [\"-C\", \"target-feature=+simd128\"]` to the crate's .cargo/config.toml";

/// Whether any core module in `bytes` (a component or a core module)
/// declares a `v128` value: a function type's parameter or result, or a
/// function's local. `false` as well when the bytes do not parse (the
/// compiler refuses them anyway, with its own error).
pub fn uses_simd128(bytes: &[u8]) -> bool {
    Parser::new(0)
        .parse_all(bytes)
        .map_while(Result::ok)
        .any(|payload| payload_declares_v128(&payload))
}

fn payload_declares_v128(payload: &Payload<'_>) -> bool {
    match payload {
        Payload::TypeSection(types) => types
            .clone()
            .into_iter_err_on_gc_types()
            .map_while(Result::ok)
            .any(|f| f.params().iter().chain(f.results()).any(is_v128)),
        Payload::CodeSectionEntry(body) => body
            .get_locals_reader()
            .into_iter()
            .flatten()
            .map_while(Result::ok)
            .any(|(_, ty)| is_v128(&ty)),
        _ => false,
    }
}

fn is_v128(ty: &ValType) -> bool {
    matches!(ty, ValType::V128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{CodeSection, Function, FunctionSection, Instruction, Module, TypeSection};

    /// A core module of one function `() -> ()` with `locals`.
    fn module(params: &[wasm_encoder::ValType], locals: &[wasm_encoder::ValType]) -> Vec<u8> {
        let mut types = TypeSection::new();
        types.ty().function(params.iter().copied(), []);
        let mut functions = FunctionSection::new();
        functions.function(0);
        let mut body = Function::new(locals.iter().map(|&t| (1, t)));
        body.instruction(&Instruction::End);
        let mut code = CodeSection::new();
        code.function(&body);
        let mut m = Module::new();
        m.section(&types).section(&functions).section(&code);
        m.finish()
    }

    #[test]
    fn a_v128_local_or_parameter_is_simd_code() {
        use wasm_encoder::ValType::{F32, I32, V128};
        assert!(uses_simd128(&module(&[], &[I32, V128])));
        assert!(uses_simd128(&module(&[V128], &[])));
        assert!(!uses_simd128(&module(&[F32], &[I32, F32])));
    }

    #[test]
    fn bytes_that_do_not_parse_are_not_simd_code() {
        assert!(!uses_simd128(b"\0asm\x01\0\0\0\x0a\xff\xff"));
        assert!(!uses_simd128(b"hello"));
    }
}
