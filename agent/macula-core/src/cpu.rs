//! What this CPU runs in hardware, for the choices that depend on it (the TLS and storage AEAD:
//! AES-GCM with AES instructions, ChaCha20-Poly1305 without, as on a Raspberry Pi 4).

/// Does this CPU have AES instructions (AES-NI + CLMUL, or the ARMv8 crypto extension)?
pub fn has_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        // The kernel's word for this CPU's features: the bits ring reads to pick its AES code.
        // SAFETY: getauxval only reads the process's auxiliary vector.
        hwcap_has_aes(unsafe { libc::getauxval(libc::AT_HWCAP) })
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Linux arm64 `AT_HWCAP` bits (arch/arm64/include/uapi/asm/hwcap.h), in bit order.
pub const HWCAP_NAMES: [&str; 21] = [
    "fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "fphp",
    "asimdhp", "cpuid", "asimdrdm", "jscvt", "fcma", "lrcpc", "dcpop", "sha3", "sm3", "sm4",
    "asimddp",
];
const HWCAP_AES: u64 = 1 << 3;
const HWCAP_PMULL: u64 = 1 << 4;

/// Whether an arm64 CPU with this `AT_HWCAP` word runs AES-GCM in hardware (AES and the
/// polynomial multiply GHASH needs).
pub fn hwcap_has_aes(hwcap: u64) -> bool {
    hwcap & (HWCAP_AES | HWCAP_PMULL) == HWCAP_AES | HWCAP_PMULL
}

/// `AT_HWCAP` from the "Features" line of /proc/cpuinfo; `None` names a feature this table lacks.
pub fn hwcap_from_features(features: &str) -> Option<u64> {
    features.split_whitespace().try_fold(0, |w, f| {
        let bit = HWCAP_NAMES.iter().position(|n| *n == f)?;
        Some(w | 1 << bit)
    })
}

/// "Features" of a Raspberry Pi 4's /proc/cpuinfo (BCM2711: Cortex-A72 built without the crypto
/// extension).
pub const RPI4_FEATURES: &str = "fp asimd evtstrm crc32 cpuid";
/// "Features" of a Raspberry Pi 5's /proc/cpuinfo (BCM2712: Cortex-A76).
pub const RPI5_FEATURES: &str = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pi4_has_no_aes_and_pi5_has() {
        assert_eq!(hwcap_from_features(RPI4_FEATURES), Some(0x887));
        assert!(!hwcap_has_aes(hwcap_from_features(RPI4_FEATURES).unwrap()));
        assert!(hwcap_has_aes(hwcap_from_features(RPI5_FEATURES).unwrap()));
        let aes_only = hwcap_from_features("fp asimd aes").unwrap();
        assert!(!hwcap_has_aes(aes_only), "AES-GCM also needs pmull");
        assert_eq!(hwcap_from_features("fp sve"), None);
    }

    /// On arm64 the detection agrees with the standard library's (run under qemu-aarch64-static
    /// by `make test-aarch64-unit`).
    #[test]
    fn detection_agrees_with_std() {
        #[cfg(target_arch = "aarch64")]
        assert_eq!(has_aes(), std::arch::is_aarch64_feature_detected!("aes"));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            has_aes(),
            std::arch::is_x86_feature_detected!("aes")
                && std::arch::is_x86_feature_detected!("pclmulqdq")
        );
    }
}
