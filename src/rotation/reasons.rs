//! Condition and Event reasons that more than one place names. CamelCase and stable: users
//! alert on them.

/// A target Secret (or the credentials Secret) lost the new credential to another writer.
pub const TARGET_SECRET_REVERTED: &str = "TargetSecretReverted";
/// Two resources rotate the Auth Token of one account; the later one never rotates.
pub const ACCOUNT_CONFLICT: &str = "AccountConflict";
/// A secondary Auth Token exists that this rotation did not create.
pub const FOREIGN_SECONDARY_TOKEN: &str = "ForeignSecondaryToken";
/// A rotation was given up before anything was created.
pub const ROTATION_FAILED: &str = "RotationFailed";
/// A rotation stopped before promotion; sent once per hold.
pub const ROTATION_HELD: &str = "RotationHeld";
