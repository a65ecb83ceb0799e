/* imapbridge: placeholder until the admin CLI lands. */
#include <stdio.h>
int main(void)
{
	fprintf(stderr, "imapbridge: not built yet\n");
	return 1;
}
