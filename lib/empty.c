/* Keeps a library with no sources of its own linkable. */
typedef int ib_empty_translation_unit;
