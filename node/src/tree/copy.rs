//! Copying a bundle folder on one machine (the spool, a worker's sandbox).

use std::path::Path;

use super::TreeError;

/// Copies a folder tree (regular files, folders and symlinks; the caller has checked there is
/// nothing else), fsync'ing nothing: the caller syncs the filesystem once.
pub fn copy_tree(src: &Path, dest: &Path) -> Result<(), TreeError> {
    std::fs::create_dir_all(dest).map_err(TreeError::io(dest))?;
    for item in std::fs::read_dir(src).map_err(TreeError::io(src))? {
        let item = item.map_err(TreeError::io(src))?;
        let from = item.path();
        let to = dest.join(item.file_name());
        let ft = item.file_type().map_err(TreeError::io(&from))?;
        if ft.is_dir() {
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&from).map_err(TreeError::io(&from))?;
            std::os::unix::fs::symlink(target, &to).map_err(TreeError::io(&to))?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(TreeError::io(&from))?;
        }
    }
    Ok(())
}
