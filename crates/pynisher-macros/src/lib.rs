//! The `#[limit]` attribute of [pynisher](https://docs.rs/pynisher): calling the function runs its
//! body in a child process under limits. Use it through `pynisher::limit` (the `macros` feature of
//! `pynisher`, on by default); the documentation and examples are there.
//!
//! ```text
//! #[pynisher::limit(wall_time = "2s", memory = "512MiB")]
//! fn solve(n: u64) -> u64 { (1..=n).product() }
//!
//! let value: u64 = solve(20)?; // Result<u64, pynisher::CallError>
//! ```

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, FnArg, ItemFn, Lit, MetaNameValue, Pat, ReturnType, Token};

/// What each key accepts, for the messages.
const KEYS: &[(&str, &str)] = &[
    (
        "wall_time",
        "a duration string such as \"2s\" or \"1500ms\"",
    ),
    ("cpu_time", "a duration string such as \"2s\""),
    ("grace_period", "a duration string such as \"200ms\""),
    (
        "memory",
        "a size string such as \"512MiB\", or a number of bytes",
    ),
    ("max_processes", "a number"),
    ("capture_output", "true or false"),
    ("backend", "\"auto\", \"cgroup2\", \"cgroup1\" or \"none\""),
];

/// Runs the function's body in a child process under the given limits; see `pynisher::limit`.
#[proc_macro_attribute]
pub fn limit(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let spec = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(attr)?;
    let mut pairs = Vec::new();
    for entry in &spec {
        let key = entry
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        if !KEYS.iter().any(|(k, _)| *k == key) {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            return Err(syn::Error::new(
                entry.path.span(),
                format!("unknown limit `{key}`; known: {}", known.join(", ")),
            ));
        }
        let value = literal_text(&entry.value).ok_or_else(|| {
            let what = KEYS.iter().find(|(k, _)| *k == key).map_or("", |(_, w)| w);
            syn::Error::new(entry.value.span(), format!("`{key}` takes {what}"))
        })?;
        if pairs.iter().any(|(k, _): &(String, String)| *k == key) {
            return Err(syn::Error::new(
                entry.path.span(),
                format!("`{key}` is given twice"),
            ));
        }
        pairs.push((key, value));
    }

    let func: ItemFn = syn::parse2(item)?;
    let sig = &func.sig;
    if let Some(a) = &sig.asyncness {
        return Err(syn::Error::new(
            a.span(),
            "#[pynisher::limit] works on plain functions, not async ones (use Limits::spawn_fn and Running::wait_async)",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "#[pynisher::limit] cannot take generic functions: the body must be one plain `fn`",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new(
            v.span(),
            "variadic functions are not supported",
        ));
    }
    let mut idents = Vec::new();
    let mut pats = Vec::new();
    let mut types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                return Err(syn::Error::new(
                    r.span(),
                    "#[pynisher::limit] works on free functions; `self` cannot cross to the child",
                ))
            }
            FnArg::Typed(t) => match &*t.pat {
                Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                    idents.push(p.ident.clone());
                    pats.push(t.pat.clone());
                    types.push(t.ty.clone());
                }
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "#[pynisher::limit] needs plain argument names (`x: T`)",
                    ))
                }
            },
        }
    }
    let ret = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let attrs = &func.attrs;
    let vis = &func.vis;
    let name = &sig.ident;
    let constness = &sig.constness;
    let unsafety = &sig.unsafety;
    let inputs = &sig.inputs;
    let block = &func.block;
    let keys = pairs.iter().map(|(k, _)| k);
    let values = pairs.iter().map(|(_, v)| v);
    let body_name = syn::Ident::new("__pynisher_limited_body", Span::mixed_site());
    let span = sig.span();
    Ok(quote_spanned! {span=>
        #(#attrs)*
        #vis #constness #unsafety fn #name(#inputs) -> ::core::result::Result<#ret, ::pynisher::CallError> {
            #[allow(unused_mut, clippy::too_many_arguments)]
            fn #body_name((#(#pats,)*): (#(#types,)*)) -> #ret #block
            ::pynisher::__macro::call(&[#((#keys, #values)),*], #body_name, (#(#idents,)*))
        }
    })
}

/// The literal's text: strings as they are, numbers and booleans spelled out.
fn literal_text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Lit(ExprLit { lit, .. }) => match lit {
            Lit::Str(s) => Some(s.value()),
            Lit::Int(i) => Some(i.base10_digits().to_string()),
            Lit::Bool(b) => Some(b.value.to_string()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(attr: TokenStream2, item: TokenStream2) -> String {
        expand(attr, item).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_known_ones() {
        let err = error_of(
            quote!(wall = "2s"),
            quote!(
                fn f() {}
            ),
        );
        assert!(err.contains("unknown limit `wall`"), "{err}");
        assert!(err.contains("wall_time"), "{err}");
    }

    #[test]
    fn non_literal_values_are_rejected_naming_the_key() {
        let err = error_of(
            quote!(memory = size()),
            quote!(
                fn f() {}
            ),
        );
        assert!(err.contains("`memory` takes"), "{err}");
    }

    #[test]
    fn methods_generics_and_async_are_rejected() {
        let err = error_of(
            quote!(),
            quote!(
                fn f(&self) {}
            ),
        );
        assert!(err.contains("free functions"), "{err}");
        let err = error_of(
            quote!(),
            quote!(
                fn f<T>(x: T) {}
            ),
        );
        assert!(err.contains("generic"), "{err}");
        let err = error_of(
            quote!(),
            quote!(
                async fn f() {}
            ),
        );
        assert!(err.contains("async"), "{err}");
        let err = error_of(
            quote!(),
            quote!(
                fn f((a, b): (u8, u8)) {}
            ),
        );
        assert!(err.contains("plain argument names"), "{err}");
    }

    #[test]
    fn the_body_moves_into_a_plain_fn_that_takes_a_tuple() {
        let out = expand(
            quote!(wall_time = "2s", memory = 512),
            quote!(
                pub fn add(a: u32, mut b: u32) -> u32 {
                    b += a;
                    b
                }
            ),
        )
        .unwrap()
        .to_string();
        assert!(
            out.contains("Result < u32 , :: pynisher :: CallError >"),
            "{out}"
        );
        assert!(out.contains("(\"wall_time\" , \"2s\")"), "{out}");
        assert!(out.contains("(\"memory\" , \"512\")"), "{out}");
        assert!(out.contains("(a , b ,)"), "{out}");
    }
}
