/* embed: see embed.h. */
#include "embed.h"

#include <string.h>

const embed_file_t *embed_find(const embed_file_t *list, const char *name, size_t len)
{
    for (; list->name != NULL; list++)
        if (strlen(list->name) == len && memcmp(list->name, name, len) == 0)
            return list;
    return NULL;
}
